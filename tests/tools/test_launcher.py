"""gateway-launcher serving MLflow's real gateway: the usage log, reloads, stop, bad input."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from conftest import FakeOpenAI, LauncherGateway, gateway_config, start_launcher, wait_until
from mlflow_gateway_tools.launcher.cli import main as launcher_main

CHAT_BODY = {"messages": [{"role": "user", "content": "How much does this cost?"}]}
LOGGED_FIELDS = [
    *("event", "ts", "request_id", "client", "method", "path", "route", "endpoint"),
    *("endpoint_type", "provider", "model_configured", "model_returned", "status"),
    *("latency_ms", "stream", "ttfb_ms", "prompt_tokens", "completion_tokens"),
    *("total_tokens", "cached_tokens", "reasoning_tokens", "error"),
]


def usage_of(body: dict[str, Any]) -> dict[str, int]:
    usage = body["usage"]
    return {
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage.get("completion_tokens"),
        "total_tokens": usage["total_tokens"],
    }


def logged_usage(line: dict[str, Any]) -> dict[str, int]:
    return {key: line[key] for key in ("prompt_tokens", "completion_tokens", "total_tokens")}


def test_each_route_writes_one_line_with_the_responses_usage(
    gateway: LauncherGateway, fake: FakeOpenAI
) -> None:
    gateway.mark()
    headers = {"X-Request-ID": "req-42", "X-Gateway-Client": "team-a"}
    chat = requests.post(
        f"{gateway.url}/gateway/chat/invocations", json=CHAT_BODY, headers=headers, timeout=10
    )
    endpoints = requests.post(
        f"{gateway.url}/endpoints/chat/invocations", json=CHAT_BODY, timeout=10
    )
    completion = requests.post(
        f"{gateway.url}/v1/completions",
        json={"model": "completions", "prompt": "Say hi"},
        timeout=10,
    )
    embedding = requests.post(
        f"{gateway.url}/v1/embeddings",
        json={"model": "embeddings", "input": ["a", "b c"]},
        timeout=10,
    )
    assert requests.get(f"{gateway.url}/health", timeout=5).ok  # never logged
    lines = gateway.new_usage_lines(4)
    assert len(lines) == 4, "health checks are not logged"
    by_path = {line["path"]: line for line in lines}

    first = by_path["/gateway/chat/invocations"]
    assert list(first) == LOGGED_FIELDS
    assert first | {"ts": None, "latency_ms": None} == {
        "event": "gateway.request",
        "ts": None,
        "request_id": "req-42",
        "client": "team-a",
        "method": "POST",
        "path": "/gateway/chat/invocations",
        "route": "gateway",
        "endpoint": "chat",
        "endpoint_type": "llm/v1/chat",
        "provider": "openai",
        "model_configured": "gpt-4.1-mini",
        "model_returned": "gpt-4.1-mini-2025-04-14",
        "status": 200,
        "latency_ms": None,
        "stream": False,
        "ttfb_ms": None,
        **usage_of(chat.json()),
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "error": None,
    }
    assert first["ts"].endswith("Z") and first["latency_ms"] > 0
    assert by_path["/endpoints/chat/invocations"]["route"] == "endpoints"
    assert logged_usage(by_path["/endpoints/chat/invocations"]) == usage_of(endpoints.json())
    assert by_path["/v1/completions"]["route"] == "openai"
    assert by_path["/v1/completions"]["endpoint"] == "completions"
    assert logged_usage(by_path["/v1/completions"]) == usage_of(completion.json())
    assert by_path["/v1/embeddings"]["endpoint_type"] == "llm/v1/embeddings"
    assert by_path["/v1/embeddings"]["prompt_tokens"] == embedding.json()["usage"]["prompt_tokens"]


def test_a_streamed_request_logs_the_final_usage_and_time_to_first_byte(
    gateway: LauncherGateway, fake: FakeOpenAI
) -> None:
    gateway.mark()
    body = {"model": "chat", "stream": True, **CHAT_BODY}
    with requests.post(
        f"{gateway.url}/v1/chat/completions", json=body, stream=True, timeout=10
    ) as response:
        events = [
            json.loads(line[6:]) for line in response.iter_lines() if line.startswith(b"data: {")
        ]
    usage = next(event["usage"] for event in reversed(events) if event.get("usage"))
    [line] = gateway.new_usage_lines(1)
    assert line["stream"] is True
    assert 0 < line["ttfb_ms"] <= line["latency_ms"]
    assert line["model_returned"] == "gpt-4.1-mini-2025-04-14"
    assert line["prompt_tokens"] == usage["prompt_tokens"]
    assert line["completion_tokens"] == usage["completion_tokens"]
    assert line["cached_tokens"] == usage["prompt_tokens_details"]["cached_tokens"]


def test_failures_are_logged_with_status_and_error_text(
    gateway: LauncherGateway, fake: FakeOpenAI
) -> None:
    gateway.mark()
    bad_body = requests.post(
        f"{gateway.url}/gateway/chat/invocations", json={"messages": "not a list"}, timeout=10
    )
    fake.control("POST", "faults", {"status": 429})
    rate_limited = requests.post(
        f"{gateway.url}/gateway/chat/invocations", json=CHAT_BODY, timeout=10
    )
    fake.control("POST", "faults", {"status": 500})
    upstream_error = requests.post(
        f"{gateway.url}/gateway/chat/invocations", json=CHAT_BODY, timeout=10
    )
    unknown = requests.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": "no-such-endpoint", **CHAT_BODY},
        timeout=10,
    )
    statuses = [r.status_code for r in (bad_body, rate_limited, upstream_error, unknown)]
    lines = gateway.new_usage_lines(4)
    assert [line["status"] for line in lines] == statuses == [422, 429, 500, 500]
    assert lines[0]["error"] == "body.messages: Input should be a valid list"
    assert "Rate limit reached" in lines[1]["error"]
    assert "Injected fault: HTTP 500" in lines[2]["error"]
    assert lines[3]["endpoint"] == "no-such-endpoint"
    assert "Invalid endpoint / route name: 'no-such-endpoint'" in lines[3]["error"]
    assert all(line["prompt_tokens"] is None for line in lines)


def test_an_upstream_error_after_a_stream_started_is_not_logged_as_success(
    gateway: LauncherGateway, fake: FakeOpenAI
) -> None:
    gateway.mark()
    fake.control("POST", "faults", {"status": 429})
    body = {"stream": True, **CHAT_BODY}
    with (
        pytest.raises(requests.exceptions.ChunkedEncodingError),
        requests.post(
            f"{gateway.url}/gateway/chat/invocations", json=body, stream=True, timeout=10
        ) as response,
    ):
        response.content  # noqa: B018 - reading the body is the point
    [line] = gateway.new_usage_lines(1)
    assert line["status"] == 200  # what the client was sent before the upstream failed
    assert line["error"].startswith("upstream error 429 after the response started")


def test_stdout_carries_only_usage_lines(gateway: LauncherGateway) -> None:
    raw = gateway.stdout_path.read_text().splitlines()
    assert raw, "earlier tests sent requests"
    assert all(json.loads(line)["event"] == "gateway.request" for line in raw)
    assert "Booting worker" in gateway.stderr()


def children_of(process_id: int) -> set[int]:
    return {child.pid for child in psutil.Process(process_id).children(recursive=True)}


def write_atomically(path: Path, text: str) -> None:
    """Replace the file by rename, as Ansible's template/copy modules do."""
    temporary = path.with_name(path.name + ".new")
    temporary.write_text(text)
    temporary.replace(path)


def endpoint_names(url: str) -> set[str]:
    response = requests.get(f"{url}/api/2.0/endpoints/", timeout=5)
    return {endpoint["name"] for endpoint in response.json()["endpoints"]}


def slow_request_in_background(url: str, fake: FakeOpenAI, delay_ms: int) -> Callable[[], Any]:
    """Start a request the fake upstream holds for `delay_ms`; returns a join() -> response."""
    fake.control("POST", "faults", {"delay_ms": delay_ms})
    before = fake.stats()["requests"]
    outcome: dict[str, Any] = {}

    def send() -> None:
        outcome["response"] = requests.post(
            f"{url}/gateway/chat/invocations", json=CHAT_BODY, timeout=30
        )

    thread = threading.Thread(target=send)
    thread.start()
    wait_until(lambda: fake.stats()["requests"] > before, "the slow request to reach upstream")

    def join() -> Any:
        thread.join(30)
        return outcome["response"]

    return join


def test_config_changes_reload_gracefully_and_bad_configs_are_refused(
    launch_gateway: Callable[..., LauncherGateway], fake: FakeOpenAI
) -> None:
    served = launch_gateway()
    config_with_chat2 = gateway_config(
        fake.api_base,
        served.key_file,
        (("chat", "llm/v1/chat", "gpt-4o-mini"), ("chat2", "llm/v1/chat", "gpt-4o")),
    )

    # A valid change mid-request: the in-flight request still completes.
    finish = slow_request_in_background(served.url, fake, delay_ms=1500)
    workers_before = children_of(served.process.pid)
    write_atomically(served.config_path, config_with_chat2)
    wait_until(lambda: "chat2" in endpoint_names(served.url), "chat2 to be served")
    in_flight = finish()
    assert in_flight.status_code == 200
    assert in_flight.json()["usage"]["prompt_tokens"] > 0
    wait_until(
        lambda: children_of(served.process.pid).isdisjoint(workers_before),
        "the old worker to exit once its request finished",
    )
    assert "changed and is valid; reloading workers gracefully" in served.stderr()

    # An invalid change is refused with one clear line; the old config keeps serving.
    write_atomically(served.config_path, config_with_chat2.replace("llm/v1/chat", "llm/v1/chatt"))
    wait_until(lambda: "refused new config" in served.stderr(), "the refusal on stderr")
    refusal = next(line for line in served.stderr().splitlines() if "refused new config" in line)
    assert str(served.config_path) in refusal
    assert "Still serving the previous valid config" in refusal

    # Even an outside SIGHUP (docker kill -s HUP) reloads into the last valid config.
    workers_before = children_of(served.process.pid)
    os.kill(served.process.pid, signal.SIGHUP)
    wait_until(
        lambda: (
            children_of(served.process.pid).isdisjoint(workers_before)
            and endpoint_names(served.url) == {"chat", "chat2"}
        ),
        "new workers serving the last valid config",
    )
    chat2 = requests.post(f"{served.url}/gateway/chat2/invocations", json=CHAT_BODY, timeout=10)
    assert chat2.json()["model"] == "gpt-4o-2024-08-06"
    assert served.stderr().count("refused new config") == 1, "one line per bad version"

    # A key file ending in a newline would make every request fail: refused too.
    served.key_file.write_text(f"{fake.key}\n")
    write_atomically(served.config_path, config_with_chat2)
    wait_until(
        lambda: "a key file ending in a newline?" in served.stderr(),
        "the key-file refusal",
    )
    assert requests.post(f"{served.url}/gateway/chat/invocations", json=CHAT_BODY, timeout=10).ok


def served_state(served: LauncherGateway) -> dict[str, Any]:
    """The launcher's record of what it serves (active-state.json in its state directory)."""
    (state_dir,) = served.config_path.parent.glob("gateway-launcher-*")
    return json.loads((state_dir / "active-state.json").read_text())


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_launcher_records_the_hashes_of_the_config_and_key_it_serves(
    launch_gateway: Callable[..., LauncherGateway], fake: FakeOpenAI
) -> None:
    """What a deploy compares with the files on the host: hashes only, never the key."""
    served = launch_gateway()
    assert served_state(served) == {
        "config_sha256": sha256_of(served.config_path.read_bytes()),
        "key_sha256": {str(served.key_file): sha256_of(fake.key.encode())},
    }
    assert fake.key not in json.dumps(served_state(served))

    # A key rotated on disk is recorded once the launcher has reloaded with it.
    served.key_file.write_text("sk-lab-fake-key-2")
    wait_until(
        lambda: (
            served_state(served)["key_sha256"][str(served.key_file)]
            == sha256_of(b"sk-lab-fake-key-2")
        ),
        "the new key's hash in active-state.json",
    )
    assert served_state(served)["config_sha256"] == sha256_of(served.config_path.read_bytes())


def test_sigterm_lets_in_flight_requests_finish_and_leaves_no_process(
    launch_gateway: Callable[..., LauncherGateway], fake: FakeOpenAI
) -> None:
    served = launch_gateway(workers=2)
    # /health answers as soon as one worker is up; gunicorn spawns the next a moment later.
    wait_until(lambda: len(children_of(served.process.pid)) == 2, "both workers to start")
    workers = children_of(served.process.pid)
    finish = slow_request_in_background(served.url, fake, delay_ms=1000)
    served.process.send_signal(signal.SIGTERM)
    assert finish().status_code == 200
    assert served.process.wait(30) == 0
    assert not [pid for pid in workers if psutil.pid_exists(pid)], "no orphaned workers"
    assert not list(served.config_path.parent.glob("gateway-launcher-*")), "state removed"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--config-path", "/nonexistent/config.yaml"], "--config-path /nonexistent/config.yaml"),
        (["--workers", "0"], "--workers 0 must be at least 1"),
        (["--port", "99999"], "--port 99999 is not a TCP port"),
        (["--reload-check-seconds", "-1"], "--reload-check-seconds -1.0 is negative"),
    ],
)
def test_cli_refuses_bad_options(
    argv: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("endpoints: []\n")
    if "--config-path" not in argv:
        argv = ["--config-path", str(config), *argv]
    assert launcher_main(argv) == 2
    assert expected in capsys.readouterr().err


@pytest.mark.parametrize(
    ("break_it", "expected"),
    [
        (lambda cfg, key: cfg.write_text("endpoints:\n  - name: [\n"), "is not a valid yaml file"),
        (
            lambda cfg, key: cfg.write_text(cfg.read_text().replace("llm/v1/chat", "llm/v2/chat")),
            "The route_type 'llm/v2/chat' is not supported",
        ),
        (
            lambda cfg, key: key.write_text("sk-lab-fake-key-1\n"),
            "(a key file ending in a newline?)",
        ),
    ],
    ids=["bad-yaml", "bad-endpoint-type", "key-with-newline"],
)
def test_refuses_to_start_on_an_invalid_config(
    tmp_path: Path, fake: FakeOpenAI, break_it: Callable[[Path, Path], None], expected: str
) -> None:
    served = start_launcher(tmp_path, fake, wait=False, before_start=break_it)
    assert served.process.wait(30) == 2
    assert f"cannot start: config {served.config_path} is invalid" in served.stderr()
    assert expected in served.stderr()
    assert served.stdout_path.read_text() == "", "nothing but usage lines on stdout"
    assert not list(tmp_path.glob("gateway-launcher-*")), "no state left behind"
