# reload-nginx CONF TIMEOUT (run with sh -c inside an nginx container)
# Checks CONF with `nginx -t`, reloads nginx gracefully and returns only once every worker of
# the previous configuration has exited: from then on no request can reach a server that the
# new configuration left out. Fails when nginx refuses the reload or the drain takes longer
# than TIMEOUT seconds. Then records what nginx now serves (nginx-loaded, in the project's
# image), which later runs compare with the files.
set -eu
conf=$1
timeout=$2

workers() {
  for proc in /proc/[0-9]*; do
    cmdline=$(tr '\0' ' ' <"$proc/cmdline" 2>/dev/null) || continue
    case $cmdline in
      "nginx: worker process"*) echo "${proc#/proc/}" ;;
    esac
  done
}

nginx -t -q -c "$conf"
previous=$(workers)
nginx -s reload -c "$conf"
deadline=$(($(date +%s) + timeout))
while :; do
  remaining=""
  for pid in $previous; do
    if [ -d "/proc/$pid" ]; then remaining="$remaining $pid"; fi
  done
  started=$(workers | grep -vxF "$(printf '%s\n' $previous)" || true)
  if [ -z "$remaining" ] && [ -n "$started" ]; then
    if command -v nginx-loaded >/dev/null 2>&1; then
      nginx-loaded record "$(dirname "$conf")"
    fi
    exit 0
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    if [ -z "$started" ]; then
      echo "nginx did not start workers with the new configuration (reload refused? see docker logs)" >&2
    else
      echo "workers of the previous configuration still running after ${timeout}s:$remaining" >&2
    fi
    exit 1
  fi
  sleep 0.1
done
