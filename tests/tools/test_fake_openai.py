"""fake-openai over real HTTP: the OpenAI shapes, keys, faults, stats, TLS and its CLI."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from conftest import LAB_KEY, ROTATED_KEY, FakeOpenAI, start_fake_openai, stop_process, wait_until
from mlflow_gateway_tools.fake_openai.cli import main as fake_openai_main

CHAT = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Hello there, how are you?"}],
}


def post(
    fake: FakeOpenAI, path: str, body: dict, key: str | None = LAB_KEY, **kwargs
) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.post(f"{fake.api_base}{path}", json=body, headers=headers, timeout=10, **kwargs)


def sse_events(response: requests.Response) -> list[Any]:
    events = []
    for line in response.iter_lines():
        if line.startswith(b"data: "):
            payload = line[6:]
            events.append("[DONE]" if payload == b"[DONE]" else json.loads(payload))
    return events


def test_chat_counts_tokens_from_the_text_and_answers_a_dated_model(fake: FakeOpenAI) -> None:
    response = post(fake, "/chat/completions", {**CHAT, "max_tokens": 5})
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "gpt-4o-mini-2024-07-18"
    # 3 priming + 3 per message + 7 tokens (Hello there , how are you ?)
    assert body["usage"]["prompt_tokens"] == 13
    assert (
        body["usage"]["completion_tokens"]
        == 5
        == len(body["choices"][0]["message"]["content"].split())
    )
    assert body["usage"]["total_tokens"] == 18
    assert body["usage"]["prompt_tokens_details"]["cached_tokens"] == 0


def test_a_repeated_prompt_reports_cached_tokens(fake: FakeOpenAI) -> None:
    first = post(fake, "/chat/completions", CHAT).json()["usage"]
    second = post(fake, "/chat/completions", CHAT).json()["usage"]
    assert first["prompt_tokens_details"]["cached_tokens"] == 0
    assert second["prompt_tokens_details"]["cached_tokens"] == second["prompt_tokens"] // 2 > 0


def test_reasoning_models_count_reasoning_inside_completion_tokens(fake: FakeOpenAI) -> None:
    usage = post(fake, "/chat/completions", {**CHAT, "model": "o3", "max_tokens": 4}).json()[
        "usage"
    ]
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 8
    assert usage["completion_tokens"] == 4 + 8


def test_streamed_chat_ends_with_a_usage_chunk_and_done(fake: FakeOpenAI) -> None:
    response = post(
        fake, "/chat/completions", {**CHAT, "stream": True, "max_tokens": 3}, stream=True
    )
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = sse_events(response)
    assert events[-1] == "[DONE]"
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 3
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-2] if e["choices"])
    assert text == "Fake answer about"


def test_stream_without_usage_when_the_client_declines_it(fake: FakeOpenAI) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": False}}
    events = sse_events(post(fake, "/chat/completions", body, stream=True))
    assert all("usage" not in event for event in events if event != "[DONE]")


def test_completions_embeddings_and_models(fake: FakeOpenAI) -> None:
    completion = post(
        fake, "/completions", {"model": "davinci-002", "prompt": "Say hi", "max_tokens": 2}
    )
    assert completion.json()["usage"]["prompt_tokens"] == 2
    assert completion.json()["choices"][0]["text"] == "Fake answer"
    embedding = post(
        fake, "/embeddings", {"model": "text-embedding-3-small", "input": ["a b", "c"]}
    )
    assert [len(item["embedding"]) for item in embedding.json()["data"]] == [8, 8]
    assert embedding.json()["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    models = requests.get(
        f"{fake.api_base}/models", headers={"Authorization": f"Bearer {LAB_KEY}"}, timeout=5
    )
    listed = {model["id"] for model in models.json()["data"]}
    assert {"gpt-4.1-mini-2025-04-14", "davinci-002", "text-embedding-3-small"} <= listed


@pytest.mark.parametrize("key", [None, "sk-wrong-key-9"])
def test_missing_or_wrong_key_gets_an_openai_style_401(fake: FakeOpenAI, key: str | None) -> None:
    response = post(fake, "/chat/completions", CHAT, key=key)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    if key:
        assert error["code"] == "invalid_api_key"
        assert key not in error["message"], "the wrong key is masked, never echoed"


def test_bad_request_bodies_get_400_naming_the_field(fake: FakeOpenAI) -> None:
    response = post(fake, "/chat/completions", {"model": "gpt-4o-mini", "messages": []})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages"
    response = post(fake, "/embeddings", {"input": "x"})
    assert response.json()["error"]["param"] == "model"


def test_queued_faults_fail_the_next_requests_then_stop(fake: FakeOpenAI) -> None:
    fake.control("POST", "faults", {"status": 429, "count": 2})
    fake.control("POST", "faults", {"status": 502, "body": "html"})
    statuses = [post(fake, "/chat/completions", CHAT) for _ in range(4)]
    assert [r.status_code for r in statuses] == [429, 429, 502, 200]
    assert statuses[0].json()["error"]["code"] == "rate_limit_exceeded"
    assert statuses[2].headers["Content-Type"].startswith("text/html")
    assert fake.stats()["by_status"] == {"200": 1, "429": 2, "502": 1}


def test_a_delay_fault_makes_one_response_slow(fake: FakeOpenAI) -> None:
    fake.control("POST", "faults", {"delay_ms": 400})
    started = time.monotonic()
    assert post(fake, "/chat/completions", CHAT).status_code == 200
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    post(fake, "/chat/completions", CHAT)
    assert time.monotonic() - started < 0.4


def test_a_chunk_delay_fault_makes_one_stream_slow_between_chunks(fake: FakeOpenAI) -> None:
    fake.control("POST", "faults", {"chunk_delay_ms": 50})
    body = {**CHAT, "stream": True, "max_tokens": 4}
    with post(fake, "/chat/completions", body, stream=True) as response:
        lines = response.iter_lines()
        first = next(lines)
        first_at = time.monotonic()
        chunks = 1 + sum(line.startswith(b"data: {") for line in lines)
    assert first.startswith(b"data: {")
    assert time.monotonic() - first_at >= 0.05 * (chunks - 1), "a wait before every chunk"
    started = time.monotonic()
    post(fake, "/chat/completions", body)
    assert time.monotonic() - started < 0.05, "only the next request is slowed"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"status": 200}, "status must be an HTTP error code"),
        ({"chunk_delay_ms": -1}, "chunk_delay_ms must be an integer >= 0"),
        ({"status": 500, "count": 0}, "count must be an integer >= 1"),
        ({"status": 500, "body": "xml"}, "body must be one of"),
        ({"count": 2}, "give a status"),
        ({"status": 500, "stauts": 1}, "unknown field"),
    ],
)
def test_bad_fault_specs_are_refused(fake: FakeOpenAI, spec: dict, expected: str) -> None:
    response = requests.post(f"{fake.url}/_fake/faults", json=spec, timeout=5)
    assert response.status_code == 400
    assert expected in response.json()["error"]
    assert fake.stats()["faults_queued"] == 0


def test_connections_are_counted_at_accept(fake: FakeOpenAI) -> None:
    with requests.Session() as session:
        for _ in range(5):
            session.post(
                f"{fake.api_base}/embeddings",
                json={"model": "m", "input": "x"},
                headers={"Authorization": f"Bearer {LAB_KEY}"},
                timeout=5,
            )
    for _ in range(2):  # no session: a new connection each
        post(fake, "/embeddings", {"model": "m", "input": "x"})
    stats = fake.stats()
    assert stats["requests"] == 7
    # 1 pooled + 2 fresh + the connection of this stats request itself
    assert stats["connections_opened"] == 1 + 2 + 1


def test_key_file_is_reread_so_keys_can_rotate(tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text(f"# accepted keys\n{LAB_KEY}\n")
    rotating = start_fake_openai("--api-key-file", str(key_file))
    try:
        assert post(rotating, "/chat/completions", CHAT, key=ROTATED_KEY).status_code == 401
        key_file.write_text(f"{LAB_KEY}\n{ROTATED_KEY}\n")
        wait_until(
            lambda: post(rotating, "/chat/completions", CHAT, key=ROTATED_KEY).ok,
            "the rotated key to be accepted",
            timeout=5,
        )
        key_file.write_text(f"{ROTATED_KEY}\n")
        wait_until(
            lambda: post(rotating, "/chat/completions", CHAT).status_code == 401,
            "the old key to be refused",
            timeout=5,
        )
    finally:
        stop_process(rotating.process)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
def test_serves_https_with_the_given_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    secure = start_fake_openai(
        "--api-key", LAB_KEY, "--tls-cert", str(cert), "--tls-key", str(key), scheme="https"
    )
    try:
        wait_until(
            lambda: requests.get(f"{secure.url}/health", verify=str(cert), timeout=2).ok,
            "the HTTPS fake to answer",
        )
        response = post(secure, "/chat/completions", CHAT, verify=str(cert))
        assert response.json()["usage"]["prompt_tokens"] == 13
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{secure.url}/health", timeout=2)  # not trusted without the cert
    finally:
        stop_process(secure.process)


def test_several_keys_and_a_clean_stop_on_sigterm() -> None:
    fake = start_fake_openai("--api-key", LAB_KEY, ROTATED_KEY)
    try:
        assert post(fake, "/chat/completions", CHAT, key=ROTATED_KEY).status_code == 200
        assert post(fake, "/chat/completions", CHAT, key=LAB_KEY).status_code == 200
    finally:
        assert stop_process(fake.process) == 0


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--tls-cert", "/tmp/cert.pem"], "--tls-cert and --tls-key go together"),
        (
            ["--api-key-file", "/nonexistent/keys"],
            "--api-key-file /nonexistent/keys does not exist",
        ),
        (["--port", "70000"], "--port 70000 is not a TCP port"),
        (["--latency-ms", "-5"], "--latency-ms -5 is negative"),
    ],
)
def test_cli_refuses_bad_options(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert fake_openai_main(argv) == 2
    assert expected in capsys.readouterr().err


def test_cli_explains_a_port_in_use() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "mlflow_gateway_tools.fake_openai", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in result.stderr


def test_cli_refuses_a_certificate_it_cannot_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate")
    assert fake_openai_main(["--tls-cert", str(bogus), "--tls-key", str(bogus)]) == 2
    assert f"cannot load TLS cert {bogus}" in capsys.readouterr().err
