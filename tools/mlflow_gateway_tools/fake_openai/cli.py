"""`fake-openai`: an OpenAI-compatible upstream for the lab, the tests and the benchmarks."""

from __future__ import annotations

import argparse
import asyncio
import errno
import ssl
from pathlib import Path

from mlflow_gateway_tools.cli_support import CommandError, run_command
from mlflow_gateway_tools.fake_openai.app import create_app
from mlflow_gateway_tools.fake_openai.keys import KeyRing
from mlflow_gateway_tools.fake_openai.server import serve, tls_context

PROG = "fake-openai"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="OpenAI-compatible fake upstream: /v1/chat/completions (SSE too), "
        "/v1/completions, /v1/embeddings, /v1/models, and a /_fake/ control API for faults.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8089, help="port (0 picks a free one)")
    parser.add_argument(
        "--api-key",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY",
        help="bearer key(s) to accept (repeatable); with no key and no key file, any key is ok",
    )
    parser.add_argument(
        "--api-key-file",
        type=Path,
        metavar="PATH",
        help="file with accepted keys, one a line; re-read when it changes (key rotation)",
    )
    parser.add_argument(
        "--latency-ms", type=int, default=0, help="delay before every /v1/* response"
    )
    parser.add_argument("--tls-cert", type=Path, metavar="PATH", help="serve HTTPS with this cert")
    parser.add_argument("--tls-key", type=Path, metavar="PATH", help="private key of --tls-cert")
    return parser


def _validate(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port {args.port} is not a TCP port; use 0-65535")
    if args.latency_ms < 0:
        raise CommandError(f"--latency-ms {args.latency_ms} is negative; use 0 or more")
    if args.api_key_file is not None and not args.api_key_file.is_file():
        raise CommandError(
            f"--api-key-file {args.api_key_file} does not exist; create it with one key a line"
        )
    if (args.tls_cert is None) != (args.tls_key is None):
        raise CommandError("--tls-cert and --tls-key go together; give both or neither")
    if args.tls_cert is None:
        return None
    try:
        return tls_context(args.tls_cert, args.tls_key)
    except (OSError, ssl.SSLError) as error:
        raise CommandError(
            f"cannot load TLS cert {args.tls_cert} / key {args.tls_key}: {error}; "
            "give a PEM certificate and its matching PEM key"
        ) from None


def _run(args: argparse.Namespace) -> int:
    ssl_context = _validate(args)
    app = create_app(KeyRing(args.api_key, args.api_key_file), latency_ms=args.latency_ms)
    try:
        asyncio.run(serve(app, args.host, args.port, ssl_context))
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise CommandError(
                f"cannot listen on {args.host}:{args.port}: address already in use; "
                "pick another --port or stop the process using it"
            ) from None
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {error}") from None
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(PROG, lambda: _run(args))
