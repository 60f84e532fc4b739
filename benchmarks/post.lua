-- wrk script: POST the JSON body in $WRK_BODY to the URL and print the run's figures as one
-- JSON line (latency in microseconds; "status" counts answers >= 400).
--   WRK_BODY='{"messages": [...]}' wrk -s benchmarks/post.lua -c 32 -t 2 -d 5 URL
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("WRK_BODY")

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end
