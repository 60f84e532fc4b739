"""Request paths side by side: direct to fake-openai, the bare MLflow gateway app, the
launcher (usage log), and nginx in front of 1 and 3 launcher replicas.

Every gateway process is a local one-worker gunicorn (bench_launcher's), so the replica
count is the only thing that changes between the nginx rows. nginx is the project's own
nginx image (the newest local `mlflow-gateway/nginx`, else built from its Dockerfile on the
lab's Debian image) in a container on the host network, with the production settings that
matter for speed: least_conn, upstream keepalive, HTTP/1.1, unbuffered, a JSON access log.
Each cell is measured twice, by wrk (post.lua) and by evaluate-gateway, so each checks the
other. Traffic goes to 127.0.0.1 only.

    .venv/bin/python benchmarks/bench_http.py [--seconds 4] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from _commands import docker, run
from _common import LAB_KEY, OUT_DIR, free_port, print_table, start_fake_openai, stop
from bench_launcher import GATEWAY_ENV, start_bare_mlflow, start_launcher, write_config

ROOT = Path(__file__).resolve().parent.parent
LUA_SCRIPT = Path(__file__).resolve().parent / "post.lua"
BIN = Path(sys.executable).parent
NGINX_DOCKERFILE = ROOT / "roles/gateway_image/files/nginx/Dockerfile"
NGINX_REPOSITORY = "mlflow-gateway/nginx"
BENCH_NGINX_IMAGE = "mgw-bench/nginx:latest"
LAB_BASE_IMAGE = "mgw-lab/debian:bookworm"
NGINX_CONTAINER = "mgw-bench-nginx"
MESSAGES = [{"role": "user", "content": "Hello"}]
DELAYS_MS = (0, 50)
CONCURRENCIES = (1, 32)
WARMUP_SECONDS = 1.0
COLUMNS = (
    "path",
    "upstream delay",
    "concurrency",
    "wrk p50 / p95 / p99 ms",
    "wrk req/s",
    "evaluate-gateway p50 / p95 / p99 ms",
    "evaluate-gateway req/s",
    "failed (wrk, eval)",
)


@dataclass(frozen=True)
class Target:
    """One request path: where to POST and what."""

    name: str
    base_url: str
    direct: bool  # fake-openai itself: OpenAI path, model in the body, bearer key

    @property
    def url(self) -> str:
        path = "/v1/chat/completions" if self.direct else "/gateway/chat/invocations"
        return self.base_url + path

    @property
    def body(self) -> str:
        body = {"model": "gpt-4o-mini", "messages": MESSAGES} if self.direct else {}
        return json.dumps(body or {"messages": MESSAGES})


@dataclass(frozen=True)
class Figures:
    p50: float
    p95: float
    p99: float
    rps: float
    failed: int

    def latency(self) -> str:
        return f"{self.p50:.1f} / {self.p95:.1f} / {self.p99:.1f}"


def run_wrk(target: Target, concurrency: int, seconds: float) -> Figures:
    argv = [
        "wrk",
        "-s",
        str(LUA_SCRIPT),
        "-c",
        str(concurrency),
        "-t",
        str(min(concurrency, os.cpu_count() or 1)),
        "-d",
        f"{seconds:g}s",
        "--timeout",
        "10s",
    ]
    if target.direct:
        argv += ["-H", f"Authorization: Bearer {LAB_KEY}"]
    result = run([*argv, target.url], env={"WRK_BODY": target.body})
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    return Figures(
        p50=figures["p50_us"] / 1000,
        p95=figures["p95_us"] / 1000,
        p99=figures["p99_us"] / 1000,
        rps=figures["requests"] / (figures["duration_us"] / 1e6),
        failed=sum(figures["errors"].values()),
    )


def run_evaluate(target: Target, concurrency: int, count: int, output: Path) -> Figures:
    """evaluate-gateway's own figures for `count` requests; its summary is the source."""
    argv = [
        str(BIN / "evaluate-gateway"),
        "--url",
        target.base_url,
        "--route",
        "openai" if target.direct else "gateway",
        "--cases",
        "simple_chat",
        "--requests",
        str(count),
        "--concurrency",
        str(concurrency),
        "--max-error-rate",
        "1",
        "--output",
        str(output),
    ]
    if target.direct:
        argv += ["--token", LAB_KEY]
    run(argv)
    summary = json.loads(output.read_text())["summary"]
    latency = summary["latency_ms"]
    return Figures(
        latency["p50"], latency["p95"], latency["p99"], summary["throughput_rps"], summary["failed"]
    )


def nginx_image() -> str:
    """The project's nginx image as the deploy built it, else the same Dockerfile built here."""
    images = docker("images", "--format", "{{.Repository}}:{{.Tag}}").split()  # newest first
    found = [image for image in images if image.rsplit(":", 1)[0].endswith(NGINX_REPOSITORY)]
    if found:
        return found[0]
    with tempfile.TemporaryDirectory(prefix="mgw-bench-nginx-") as context:
        (Path(context) / "ca").mkdir()
        docker(
            "build",
            "--quiet",
            "--build-arg",
            f"BASE_IMAGE={LAB_BASE_IMAGE}",
            "--file",
            str(NGINX_DOCKERFILE),
            "--tag",
            BENCH_NGINX_IMAGE,
            context,
        )
    return BENCH_NGINX_IMAGE


def nginx_config(listen: dict[int, list[int]]) -> str:
    """One server per listen port, proxying to its replicas' ports."""
    blocks = []
    for port, replicas in listen.items():
        servers = "".join(f"        server 127.0.0.1:{replica};\n" for replica in replicas)
        blocks.append(
            f"    upstream replicas_{port} {{\n        least_conn;\n{servers}"
            "        keepalive 32;\n    }\n"
            f"    server {{\n        listen 127.0.0.1:{port};\n"
            f"        location / {{ proxy_pass http://replicas_{port}; }}\n    }}\n"
        )
    return (
        "worker_processes auto;\npid /tmp/nginx.pid;\nerror_log /dev/stderr warn;\n"
        "events { worker_connections 4096; }\nhttp {\n"
        '    log_format gateway_json escape=json \'{"time":"$time_iso8601","status":$status,'
        '"request_time":$request_time,"upstream_addr":"$upstream_addr"}\';\n'
        "    access_log /dev/stdout gateway_json;\n"
        '    proxy_http_version 1.1;\n    proxy_set_header Connection "";\n'
        "    proxy_buffering off;\n    proxy_next_upstream error timeout http_502 http_503;\n"
        + "".join(blocks)
        + "}\n"
    )


@contextmanager
def nginx_container(listen: dict[int, list[int]], work: Path) -> Iterator[None]:
    config = work / "nginx.conf"
    config.write_text(nginx_config(listen))
    docker("rm", "--force", NGINX_CONTAINER, check=False)
    docker(
        "run",
        "--detach",
        "--name",
        NGINX_CONTAINER,
        "--network",
        "host",
        "--volume",
        f"{config}:/etc/nginx/bench.conf:ro",
        nginx_image(),
        "nginx",
        "-c",
        "/etc/nginx/bench.conf",
        "-g",
        "daemon off;",
    )
    try:
        yield
    finally:
        docker("rm", "--force", NGINX_CONTAINER, check=False)


@contextmanager
def stack(delay_ms: int) -> Iterator[list[Target]]:
    """fake-openai at `delay_ms`, the bare app, 3 launcher replicas, nginx; stopped after."""
    work = OUT_DIR / f"bench-http-{delay_ms}ms"
    work.mkdir(parents=True, exist_ok=True)
    os.environ.update(GATEWAY_ENV)
    with ExitStack() as cleanup:
        fake, fake_url = start_fake_openai(delay_ms)
        cleanup.callback(stop, fake)
        config = write_config(work, f"{fake_url}/v1")
        with ThreadPoolExecutor(max_workers=4) as pool:  # each takes seconds to import mlflow
            bare_job = pool.submit(start_bare_mlflow, config)
            replica_jobs = [
                pool.submit(start_launcher, config, work / f"usage-{number}.log")
                for number in (1, 2, 3)
            ]
            started = [bare_job.result(), *(job.result() for job in replica_jobs)]
        for process, _url in started:
            cleanup.callback(stop, process)
        (_, bare_url), *replicas = started
        replica_ports = [int(url.rsplit(":", 1)[1]) for _process, url in replicas]
        one, three = free_port(), free_port()
        cleanup.enter_context(nginx_container({one: replica_ports[:1], three: replica_ports}, work))
        targets = [
            Target("direct to fake-openai", fake_url, direct=True),
            Target("bare MLflow gateway app", bare_url, direct=False),
            Target("launcher (usage log)", replicas[0][1], direct=False),
            Target("nginx + 1 launcher replica", f"http://127.0.0.1:{one}", direct=False),
            Target("nginx + 3 launcher replicas", f"http://127.0.0.1:{three}", direct=False),
        ]
        for target in targets:
            warm_up(target)
        yield targets


def warm_up(target: Target) -> None:
    """Fresh workers are slow at first (imports, connections, caches): one unmeasured second."""
    run_wrk(target, max(CONCURRENCIES), WARMUP_SECONDS)


def evaluate_count(concurrency: int, delay_ms: int) -> int:
    """Enough requests for stable percentiles without a long run (about 1-5 s each)."""
    if concurrency == 1:
        return 100 if delay_ms else 300
    return 640


def measure(seconds: float) -> list[list[str]]:
    rows = []
    for delay_ms in DELAYS_MS:
        with stack(delay_ms) as targets:
            for target in targets:
                for concurrency in CONCURRENCIES:
                    by_wrk = run_wrk(target, concurrency, seconds)
                    output = OUT_DIR / f"bench-http-{delay_ms}ms" / "evaluate.json"
                    count = evaluate_count(concurrency, delay_ms)
                    by_eval = run_evaluate(target, concurrency, count, output)
                    rows.append(
                        [
                            target.name,
                            f"{delay_ms} ms",
                            str(concurrency),
                            by_wrk.latency(),
                            f"{by_wrk.rps:,.0f}",
                            by_eval.latency(),
                            f"{by_eval.rps:,.0f}",
                            f"{by_wrk.failed}, {by_eval.failed}",
                        ]
                    )
    return rows


def title(seconds: float) -> str:
    return (
        f"Request paths: wrk {seconds:g} s per cell next to evaluate-gateway "
        "(one uvicorn worker per gateway process, chat request, local processes)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4, help="wrk duration per cell")
    parser.add_argument("--markdown", action="store_true", help="print markdown rows")
    args = parser.parse_args()
    print_table(title(args.seconds), COLUMNS, measure(args.seconds), args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
