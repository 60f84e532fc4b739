# shellcheck shell=bash
# Shared helpers for scripts/lab and scripts/build-base-image (sourced, not run).
# shellcheck disable=SC2034  # the variables below are used by the scripts that source this

LAB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LAB_STATE="$LAB_ROOT/.lab"
LAB_CACHE="$LAB_ROOT/.cache/lab"
LAB_BASE_IMAGE=mgw-lab/debian:bookworm
# Label on every lab image (not the base: images others build FROM it would inherit it),
# with the hash of its build inputs next to it (<label>.hash).
LAB_IMAGE_LABEL=org.mgw-lab.image
LAB_MIN_COMPOSE=2.18.0

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }

# Seconds since the epoch, for "took N s" progress lines.
now() { date +%s; }

require_command() {
  # $1: command, $2: what to install to get it
  command -v "$1" >/dev/null 2>&1 || die "'$1' is not installed.
  Fix: $2 (or run 'make bootstrap'), then run this command again."
}

require_docker() {
  require_command docker "install Docker (Debian: apt-get install docker.io)"
  local err
  if ! err=$(docker info --format '{{.ServerVersion}}' 2>&1 >/dev/null); then
    case "$err" in
      *"permission denied"*)
        die "this user may not use Docker ($err).
  Fix: add the user to the docker group (sudo usermod -aG docker $(id -un)) and log in again." ;;
      *)
        die "the Docker daemon does not answer ($err).
  Fix: start it (systemctl start docker, or run 'make bootstrap' which starts dockerd)." ;;
    esac
  fi
}

require_compose_v2() {
  local version
  version=$(docker compose version --short 2>/dev/null | sed 's/^v//; s/-.*//' || true)
  [ -n "$version" ] || die "Docker Compose v2 ('docker compose') is not installed.
  Fix: install the compose plugin (Debian bookworm: docker-compose from trixie, see 'make bootstrap')."
  version_ge "$version" "$LAB_MIN_COMPOSE" || die "Docker Compose $version is too old; the lab needs >= $LAB_MIN_COMPOSE.
  Fix: upgrade the compose plugin (see 'make bootstrap')."
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# Print the comment block at the top of a script (after the shebang) as its usage text.
usage_from_header() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$1"; }
