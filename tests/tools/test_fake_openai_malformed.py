"""fake-openai refuses malformed input cleanly: a bad option is one stderr line and exit 2
(never a traceback, nothing written), and a malformed request gets an OpenAI-style JSON
error instead of a 500."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from conftest import FakeOpenAI

PROG = "fake-openai"
# Long enough that a refusal that never comes fails the test instead of hanging it.
REFUSAL_TIMEOUT_S = 20


@dataclass(frozen=True)
class Bad:
    """One bad command line ("{dir}" is the run directory), files to create there first,
    and what the one error line says."""

    argv: tuple[str, ...]
    expected: str
    files: Mapping[str, str | bytes] = field(default_factory=dict)


BAD_OPTIONS = {
    "port-out-of-range": Bad(("--port", "70000"), "--port 70000 is not a TCP port; use 0-65535"),
    "port-not-a-number": Bad(("--port", "http"), "argument --port: invalid int value: 'http'"),
    "latency-negative": Bad(("--latency-ms", "-5"), "--latency-ms -5 is negative; use 0 or more"),
    "unknown-option": Bad(("--route", "openai"), "unrecognized arguments: --route openai"),
    "host-not-of-this-machine": Bad(
        ("--host", "192.0.2.1", "--port", "0"),  # TEST-NET-1: never assigned, nothing is sent
        "cannot listen on 192.0.2.1:0: not an address of this machine; give --host",
    ),
    "empty-api-key": Bad(("--api-key", ""), "--api-key: key '***' is empty"),
    "api-key-with-space": Bad(("--api-key", "sk-test fake"), "has ' ' at position 7"),
    "api-key-non-ascii": Bad(("--api-key", "sk-tést-fake"), "has 'é' at position 4"),
    "api-key-file-missing": Bad(
        ("--api-key-file", "{dir}/keys"), "--api-key-file {dir}/keys does not exist"
    ),
    "api-key-file-is-a-directory": Bad(
        ("--api-key-file", "{dir}"), "cannot read --api-key-file {dir}: Is a directory"
    ),
    "api-key-file-not-utf8": Bad(
        ("--api-key-file", "{dir}/keys"),
        "--api-key-file {dir}/keys is not UTF-8 text (byte 0xff at offset 13)",
        files={"keys": b"sk-test-fake\n\xff\n"},
    ),
    "api-key-file-non-ascii-key": Bad(
        ("--api-key-file", "{dir}/keys"),
        "--api-key-file {dir}/keys: key 'sk-tés***fake' has 'é' at position 4",
        files={"keys": "sk-test-fake\nsk-tést-fake\n"},
    ),
    "tls-cert-without-key": Bad(("--tls-cert", "{dir}/cert.pem"), "--tls-cert and --tls-key go"),
    "tls-cert-not-pem": Bad(
        ("--tls-cert", "{dir}/cert.pem", "--tls-key", "{dir}/cert.pem"),
        "cannot load TLS cert {dir}/cert.pem",
        files={"cert.pem": "not a certificate"},
    ),
}


def run_fake_openai(directory: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlflow_gateway_tools.fake_openai", *argv],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=REFUSAL_TIMEOUT_S,
        check=False,
    )


def snapshot(directory: Path) -> dict[str, bytes | None]:
    return {
        str(path.relative_to(directory)): path.read_bytes() if path.is_file() else None
        for path in sorted(directory.rglob("*"))
    }


def assert_refused(result: subprocess.CompletedProcess[str]) -> str:
    """Exit 2 with exactly one error line and nothing on stdout; returns the line."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected one error line, got:\n{result.stderr}"
    assert lines[0].startswith(f"{PROG}: error: "), lines[0]
    assert result.returncode == 2, lines[0]
    assert result.stdout == ""
    return lines[0]


@pytest.mark.parametrize("bad", BAD_OPTIONS.values(), ids=BAD_OPTIONS.keys())
def test_a_bad_option_is_refused_in_one_line(bad: Bad, tmp_path: Path) -> None:
    for name, content in bad.files.items():
        path = tmp_path / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    before = snapshot(tmp_path)
    result = run_fake_openai(tmp_path, [arg.replace("{dir}", str(tmp_path)) for arg in bad.argv])
    line = assert_refused(result)
    assert bad.expected.replace("{dir}", str(tmp_path)) in line
    assert snapshot(tmp_path) == before


def test_a_port_in_use_is_refused_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = assert_refused(run_fake_openai(tmp_path, ["--port", str(port)]))
    assert f"cannot listen on 127.0.0.1:{port}: address already in use; pick another" in line


def _headers(authorization: bytes) -> dict[str, bytes]:
    return {"Authorization": authorization, "Content-Type": b"application/json"}


@dataclass(frozen=True)
class BadRequest:
    """A malformed request: path, raw Authorization header, raw body; the answer expected."""

    path: str
    authorization: bytes
    body: bytes
    status: int
    message: str


GOOD_KEY = b"Bearer sk-lab-fake-key-1"  # conftest's LAB_KEY, which the session fake accepts
BAD_REQUESTS = {
    "bearer-non-ascii-utf8": BadRequest(
        "/v1/models", "Bearer sk-tést-fake".encode(), b"", 401, "Incorrect API key provided"
    ),
    "bearer-non-utf8-byte": BadRequest(
        "/v1/models", b"Bearer sk-t\xffst-fake", b"", 401, "Incorrect API key provided"
    ),
    "body-not-utf8": BadRequest(
        "/v1/chat/completions", GOOD_KEY, b"\xff", 400, "could not parse the JSON body"
    ),
    "body-not-json": BadRequest(
        "/v1/chat/completions", GOOD_KEY, b"{", 400, "could not parse the JSON body"
    ),
    "embedding-dimensions-huge": BadRequest(
        "/v1/embeddings",
        GOOD_KEY,
        b'{"model": "text-embedding-3-small", "input": "x", "dimensions": 100000000}',
        400,
        "'dimensions' must be an integer from 1 to 3072",
    ),
}


@pytest.mark.parametrize("bad", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_a_malformed_request_gets_an_openai_style_error(bad: BadRequest, fake: FakeOpenAI) -> None:
    method = "GET" if bad.path == "/v1/models" else "POST"
    response = requests.request(
        method, fake.url + bad.path, headers=_headers(bad.authorization), data=bad.body, timeout=10
    )
    assert response.status_code == bad.status, response.text
    error = response.json()["error"]
    assert bad.message in error["message"]
    assert error["type"] == "invalid_request_error"
    assert fake.stats()["by_status"] == {str(bad.status): 1}, "the fake still counts it"


def test_a_fault_spec_that_is_not_utf8_is_refused(fake: FakeOpenAI) -> None:
    response = requests.post(f"{fake.url}/_fake/faults", data=b"\xff", timeout=10)
    assert response.status_code == 400
    assert response.json()["error"].startswith("bad fault spec: 'utf-8' codec can't decode")
    assert fake.stats()["faults_queued"] == 0
