"""`fake-openai`: an OpenAI-compatible upstream for the lab, the tests and the benchmarks."""

from __future__ import annotations

import argparse
import asyncio
import errno
import socket
import ssl
from pathlib import Path

from mlflow_gateway_tools.cli_support import ArgumentParser, CommandError, run_command
from mlflow_gateway_tools.fake_openai.app import create_app
from mlflow_gateway_tools.fake_openai.keys import KeyRing, key_problem, mask_key
from mlflow_gateway_tools.fake_openai.server import serve, tls_context
from mlflow_gateway_tools.input_files import not_utf8

PROG = "fake-openai"


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
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


def _read_key_file(path: Path) -> list[str]:
    """The key file's keys, each checked like an --api-key."""
    if not path.exists():
        raise CommandError(f"--api-key-file {path} does not exist; create it with one key a line")
    try:
        keys = KeyRing([], path).keys
    except OSError as error:
        raise CommandError(
            f"cannot read --api-key-file {path}: {error.strerror}; give a file with one key a line"
        ) from None
    except UnicodeDecodeError as error:
        raise CommandError(
            not_utf8("--api-key-file", path, error, "write one ASCII key a line")
        ) from None
    return list(keys)


def _key_ring(args: argparse.Namespace) -> KeyRing:
    """Refuse a key no client could send: it would never match, or (empty) open the fake."""
    given = [("--api-key", key) for key in args.api_key]
    if args.api_key_file is not None:
        source = f"--api-key-file {args.api_key_file}"
        given += [(source, key) for key in _read_key_file(args.api_key_file)]
    for source, key in given:
        if (problem := key_problem(key)) is not None:
            raise CommandError(f"{source}: key {mask_key(key)!r} {problem}")
    return KeyRing(args.api_key, args.api_key_file)


def _listen_error(args: argparse.Namespace, error: OSError) -> CommandError:
    """One line naming the address, the reason and the fix (asyncio's own text repeats the
    address in a tuple)."""
    where = f"cannot listen on {args.host}:{args.port}"
    if error.errno == errno.EADDRINUSE:
        reason, fix = "address already in use", "pick another --port or stop the process using it"
    elif error.errno == errno.EADDRNOTAVAIL or isinstance(error, socket.gaierror):
        reason = "not an address of this machine"
        fix = "give --host 127.0.0.1, 0.0.0.0 or one of this machine's addresses"
    elif error.errno == errno.EACCES:
        reason, fix = "permission denied", "ports below 1024 need root; pick --port 1024 or above"
    else:
        reason, fix = str(error), "check --host and --port"
    return CommandError(f"{where}: {reason}; {fix}")


def _run(args: argparse.Namespace) -> int:
    ssl_context = _validate(args)
    app = create_app(_key_ring(args), latency_ms=args.latency_ms)
    try:
        asyncio.run(serve(app, args.host, args.port, ssl_context))
    except OSError as error:
        raise _listen_error(args, error) from None
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(PROG, lambda: _run(args))
