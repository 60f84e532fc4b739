"""evaluate-gateway against the real launcher-served gateway and the fake upstream."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import LAB_KEY, FakeOpenAI, LauncherGateway, free_port
from mlflow_gateway_tools.evaluate.cases import CaseFileError, load_cases
from mlflow_gateway_tools.evaluate.cli import main as evaluate

ENDPOINTS = {"chat": "chat", "completions": "completions", "embeddings": "embeddings"}


def run(tmp_path: Path, *argv: str) -> tuple[int, dict[str, Any] | None]:
    output = tmp_path / "results.json"
    code = evaluate([*argv, "--output", str(output)])
    return code, json.loads(output.read_text()) if output.exists() else None


def test_builtin_cases_stream_through_the_gateway(
    gateway: LauncherGateway, fake: FakeOpenAI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, results = run(tmp_path, "--url", gateway.url, "--stream", "--repeat", "2")
    assert code == 0
    assert results is not None
    records = results["requests"]
    assert [r["case"] for r in records] == [
        "simple_chat",
        "multi_turn",
        "completion",
        "embedding",
    ] * 2
    assert all(r["ok"] and r["status"] == 200 for r in records)
    chats = [r for r in records if r["kind"] == "chat"]
    assert all(r["stream"] and 0 < r["ttft_ms"] <= r["latency_ms"] for r in chats)
    assert all(r["prompt_tokens"] > 0 for r in records)
    summary = results["summary"]
    assert summary["success_rate"] == 1.0
    assert summary["tokens"]["prompt_tokens"] == sum(r["prompt_tokens"] for r in records)
    assert summary["cost"]["total_usd"] > 0
    assert {row["priced_as"] for row in summary["cost"]["by_model"]} == {
        "gpt-4.1-mini",
        "davinci-002",
        "text-embedding-3-small",
    }
    out = capsys.readouterr().out
    assert "Gateway evaluation: " + gateway.url in out
    assert "\x1b[" not in out, "no progress bar or colours when stdout is not a terminal"


def test_openai_route_and_token_straight_against_the_fake(
    fake: FakeOpenAI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text(
        "cases:\n"
        "  - name: hello\n"
        "    endpoint: gpt-4.1-mini\n"
        "    messages: [{role: user, content: Hello}]\n"
        "    max_tokens: 3\n"
    )
    args = ("--url", fake.url, "--route", "openai", "--test-file", str(cases), "--requests", "3")
    code, results = run(tmp_path, *args)
    assert code == 1, "every request is refused without a token"
    assert results is not None and results["summary"]["errors_by_status"] == {"401": 3}
    assert "Error rate 100.0% exceeds --max-error-rate 0.0%" in capsys.readouterr().err
    code, results = run(tmp_path, *args, "--token", LAB_KEY)
    assert code == 0
    assert results is not None
    assert [r["completion_tokens"] for r in results["requests"]] == [3, 3, 3]
    assert results["requests"][0]["model_returned"] == "gpt-4.1-mini-2025-04-14"


def test_error_rate_threshold(gateway: LauncherGateway, fake: FakeOpenAI, tmp_path: Path) -> None:
    args = (
        "--url",
        gateway.url,
        "--cases",
        "simple_chat",
        "--requests",
        "10",
        "--concurrency",
        "1",
    )
    fake.control("POST", "faults", {"status": 500, "count": 2})
    code, results = run(tmp_path, *args, "--max-error-rate", "0.1")
    assert code == 1
    assert results is not None and results["summary"]["errors_by_status"] == {"500": 2}
    fake.control("POST", "faults", {"status": 500, "count": 2})
    assert run(tmp_path, *args, "--max-error-rate", "0.25")[0] == 0


def test_builtin_cases_for_missing_endpoints_are_skipped(
    gateway: LauncherGateway, fake: FakeOpenAI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, results = run(tmp_path, "--url", gateway.url, "--embeddings-endpoint", "vectors")
    assert code == 0
    assert results is not None and "embedding" not in results["settings"]["cases"]
    assert (
        "Skipping built-in case 'embedding': the gateway has no endpoint 'vectors' "
        "(it has: chat, completions, embeddings)" in capsys.readouterr().err
    )


def test_a_down_gateway_is_named_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("GATEWAY_URL", url)
    code, results = run(tmp_path)
    assert code == 2
    assert results is None, "nothing is written when the gateway is down"
    error = capsys.readouterr().err
    assert f"the gateway is down or unreachable: nothing answers at {url}/health" in error
    assert "--url / GATEWAY_URL" in error


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--concurrency", "0"], "--concurrency 0 must be at least 1"),
        (["--requests", "0"], "--requests 0 must be at least 1"),
        (["--max-error-rate", "5"], "--max-error-rate 5 is a fraction from 0 to 1"),
        (["--timeout", "0"], "--timeout 0 must be more than 0 seconds"),
        (["--url", "localhost:5000"], "--url 'localhost:5000' must start with http://"),
        (["--cases", "simple_chat,nope"], "--cases nope not found; available: completion"),
        (["--test-file", "/nonexistent/cases.yaml"], "cannot read --test-file /nonexistent"),
    ],
)
def test_bad_options_get_a_clear_message(
    argv: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(tmp_path, *argv)[0] == 2
    assert expected in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "suffix", "expected"),
    [
        ('[{"name": "a", "mesages": []}]', ".json", "case 0 ('a'): field 'mesages' is not known"),
        (
            '[{"name": "ok", "prompt": "x"}, {"name": "b", "messages": []}]',
            ".json",
            "case 1 ('b'): field 'messages' must be a non-empty list",
        ),
        (
            "- {name: c, messages: [{role: robot, content: hi}]}\n",
            ".yaml",
            "case 0 ('c'): field 'messages' item 0 has role 'robot'",
        ),
        (
            "- {name: d, prompt: hi, max_tokens: 0}\n",
            ".yaml",
            "field 'max_tokens' must be an integer",
        ),
        (
            "- {name: e, prompt: hi, temperature: 9}\n",
            ".yaml",
            "field 'temperature' must be a number",
        ),
        (
            "- {name: f, type: audio, prompt: hi}\n",
            ".yaml",
            "case 0 ('f'): field 'type' must be one",
        ),
        ("- {name: g, input: x}\n- {name: g, input: y}\n", ".yaml", "case name 'g' is used more"),
        ("[]", ".json", "must hold a non-empty list of cases"),
        ("[{", ".json", "is not valid JSON"),
        ("cases: [\n", ".yaml", "is not valid YAML"),
    ],
)
def test_test_file_problems_name_the_case_and_field(
    tmp_path: Path, content: str, suffix: str, expected: str
) -> None:
    path = tmp_path / f"cases{suffix}"
    path.write_text(content)
    with pytest.raises(CaseFileError) as error:
        load_cases(path, ENDPOINTS)
    assert expected in str(error.value)


def test_test_file_cases_infer_their_type_and_take_parameters(tmp_path: Path) -> None:
    path = tmp_path / "cases.json"
    path.write_text(
        json.dumps(
            [
                {
                    "name": "chat",
                    "messages": [{"role": "user", "content": "Hi"}],
                    "temperature": 0.2,
                },
                {"name": "complete", "prompt": "Once", "params": {"max_tokens": 5}},
                {"name": "embed", "input": ["a", "b"], "endpoint": "vectors"},
            ]
        )
    )
    cases = load_cases(path, ENDPOINTS)
    assert [(c.kind, c.endpoint) for c in cases] == [
        ("chat", "chat"),
        ("completions", "completions"),
        ("embeddings", "vectors"),
    ]
    assert cases[0].body["temperature"] == 0.2
    assert cases[1].body == {"prompt": "Once", "max_tokens": 5}
