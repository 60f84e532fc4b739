"""evaluate-gateway refuses every malformed input before it sends a single (paid) request.

Each case runs the real command against the session's fake upstream with one bad input and
checks: exit code 2, exactly one stderr line naming the bad value and the fix, no file
written, and zero requests at the upstream. A control run with the same base arguments
proves the upstream counts requests, so a refusal that came too late would show.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import FakeOpenAI, free_port
from mlflow_gateway_tools.evaluate.cli import main as evaluate

PROG = "evaluate-gateway"
GOOD_CASES = "- {name: hello, endpoint: gpt-4o-mini, messages: [{role: user, content: Hi}]}\n"


def case_file(extra: str, endpoint: str = "gpt-4o-mini") -> str:
    """A one-case chat test file with `extra` YAML added to the case's mapping."""
    return (
        f"- {{name: bad, endpoint: {endpoint}, messages: [{{role: user, content: Hi}}]{extra}}}\n"
    )


@dataclass(frozen=True)
class Bad:
    """One malformed input: arguments after the good base ones (argparse: the last wins),
    files to create under the run directory first, and what the one error line says."""

    argv: tuple[str, ...]
    expected: str  # "{dir}" stands for the run directory
    files: Mapping[str, str | bytes] = field(default_factory=dict)
    dirs: tuple[str, ...] = ()


BAD_INPUTS = {
    # --url
    "url-without-scheme": Bad(("--url", "localhost:5000"), "--url 'localhost:5000' must start"),
    "url-without-host": Bad(("--url", "http://"), "--url 'http://' must start with http:// or"),
    "url-port-out-of-range": Bad(
        ("--url", "http://127.0.0.1:99999"), "--url 'http://127.0.0.1:99999' is not a URL"
    ),
    "url-with-query": Bad(
        ("--url", "http://127.0.0.1:5000/?x=1"), "without spaces, ?query or #fragment"
    ),
    # --token (never echoed)
    "token-non-ascii": Bad(("--token", "sk-tést-fake"), "--token (GATEWAY_TOKEN) has 'é' at"),
    "token-with-newline": Bad(("--token", "sk-test-fake\n"), "has '\\n' at position 12"),
    # counts and durations
    "concurrency-zero": Bad(("--concurrency", "0"), "--concurrency 0 must be at least 1"),
    "repeat-zero": Bad(("--repeat", "0"), "--repeat 0 must be at least 1"),
    "requests-negative": Bad(("--requests", "-3"), "--requests -3 must be at least 1"),
    "requests-not-a-number": Bad(
        ("--requests", "ten"), "argument --requests: invalid int value: 'ten'"
    ),
    "duration-nan": Bad(("--duration", "nan"), "--duration nan must be more than 0 seconds"),
    "duration-infinite": Bad(("--duration", "inf"), "use --until-stopped"),
    "duration-zero": Bad(("--duration", "0"), "--duration 0 must be more than 0 seconds"),
    "timeout-nan": Bad(("--timeout", "nan"), "--timeout nan must be more than 0 seconds"),
    "max-error-rate-above-one": Bad(("--max-error-rate", "5"), "--max-error-rate 5 is a fraction"),
    "requests-and-repeat": Bad(
        ("--requests", "2", "--repeat", "2"), "argument --repeat: not allowed with argument"
    ),
    # choices and names
    "unknown-route": Bad(("--route", "v2"), "argument --route: invalid choice: 'v2' (choose from"),
    "unknown-stream-mode": Bad(("--stream", "some"), "argument --stream: invalid choice: 'some'"),
    "unknown-option": Bad(("--repeats", "2"), "unrecognized arguments: --repeats 2"),
    "cases-unknown-name": Bad(("--cases", "nope"), "--cases nope not found; available: hello"),
    "cases-naming-none": Bad(("--cases", ","), "--cases ',' names no case"),
    "endpoint-option-with-slash": Bad(
        ("--chat-endpoint", "chat/v2"), "--chat-endpoint must be a gateway endpoint name"
    ),
    "endpoint-option-empty": Bad(("--embeddings-endpoint", ""), "got ''"),
    # --output / --progress / --stop-file
    "output-is-a-directory": Bad(
        ("--output", "{dir}/out"), "cannot write --output {dir}/out: Is a directory", dirs=("out",)
    ),
    "progress-is-a-directory": Bad(
        ("--progress", "{dir}/out"), "give --progress a file name, not a directory", dirs=("out",)
    ),
    "output-in-a-missing-directory": Bad(
        ("--output", "{dir}/missing/results.json"), "Fix: create {dir}/missing or give --output"
    ),
    "progress-in-a-missing-directory": Bad(
        ("--progress", "{dir}/missing/progress.json"), "cannot write --progress {dir}/missing"
    ),
    "output-under-a-file": Bad(
        ("--output", "{dir}/cases.yaml/results.json"), "cannot write --output {dir}/cases.yaml/"
    ),
    "output-is-the-test-file": Bad(
        ("--output", "{dir}/cases.yaml"), "--output and --test-file both name {dir}/cases.yaml"
    ),
    "output-is-the-progress-file": Bad(
        ("--progress", "{dir}/results.json"), "--output and --progress both name"
    ),
    "stop-file-is-the-progress-file": Bad(
        ("--stop-file", "{dir}/progress.json"), "--progress and --stop-file both name"
    ),
    "stop-file-exists": Bad(("--stop-file", "{dir}/cases.yaml"), "exists already"),
    # --pricing
    "pricing-missing": Bad(("--pricing", "{dir}/nope.yaml"), "cannot read pricing file {dir}/nope"),
    "pricing-is-a-directory": Bad(("--pricing", "{dir}"), "Is a directory"),
    "pricing-not-utf8": Bad(
        ("--pricing", "{dir}/prices.yaml"),
        "pricing file {dir}/prices.yaml is not UTF-8 text (byte 0xff at offset 8)",
        files={"prices.yaml": b"models: \xff\n"},
    ),
    "pricing-not-a-mapping": Bad(
        ("--pricing", "{dir}/prices.yaml"), "{dir}/prices.yaml", files={"prices.yaml": "- 1\n"}
    ),
    "pricing-invalid-yaml": Bad(
        ("--pricing", "{dir}/prices.yaml"),
        "pricing file {dir}/prices.yaml is not valid YAML",
        files={"prices.yaml": "models: [\n"},
    ),
    # --test-file as a whole
    "test-file-missing": Bad(("--test-file", "{dir}/nope.yaml"), "cannot read --test-file {dir}/"),
    "test-file-is-a-directory": Bad(("--test-file", "{dir}"), "Is a directory; give a readable"),
    "test-file-not-utf8": Bad((), "is not UTF-8 text (byte 0xff", files={"cases.yaml": b"\xff"}),
    "test-file-a-scalar": Bad(
        (), "must hold a non-empty list of cases", files={"cases.yaml": "hi"}
    ),
    "test-file-empty": Bad((), "must hold a non-empty list of cases", files={"cases.yaml": ""}),
    "test-file-mapping-without-cases": Bad(
        (), "must hold a non-empty list", files={"cases.yaml": "name: x\nprompt: y\n"}
    ),
    "test-file-invalid-yaml": Bad(
        (), "is not valid YAML: expected the node content", files={"cases.yaml": "cases: [\n"}
    ),
    "test-file-invalid-json": Bad(
        ("--test-file", "{dir}/cases.json"), "is not valid JSON", files={"cases.json": "[{"}
    ),
    # --test-file: one case
    "case-not-a-mapping": Bad(
        (), "case 0: must be an object, got list", files={"cases.yaml": "- [a]"}
    ),
    "case-yaml-date-in-params": Bad(
        (),
        "case 1 ('bad'): field 'params.user' is a YAML date (2026-11-01), not JSON; "
        "quote it: '2026-11-01'",
        files={"cases.yaml": GOOD_CASES + case_file(", params: {user: 2026-11-01}")},
    ),
    "case-yaml-date-as-parameter": Bad(
        (),
        "field 'stop' is a YAML date (2026-11-01)",
        files={"cases.yaml": case_file(", stop: 2026-11-01")},
    ),
    "case-yaml-date-in-content": Bad(
        (),
        "field 'messages[0].content[0].text' is a YAML date",
        files={
            "cases.yaml": "- {name: bad, endpoint: e, messages: "
            "[{role: user, content: [{type: text, text: 2026-11-01}]}]}\n"
        },
    ),
    "case-yaml-date-as-key": Bad(
        (),
        "field 'params.logit_bias.2026-11-01' is a YAML date",
        files={"cases.yaml": case_file(", params: {logit_bias: {2026-11-01: 1}}")},
    ),
    "case-yaml-binary": Bad(
        (), "field 'user' is a YAML bytes", files={"cases.yaml": case_file(", user: !!binary aGk=")}
    ),
    "case-yaml-set": Bad(
        (), "field 'stop' is a YAML set", files={"cases.yaml": case_file(", stop: !!set {a: null}")}
    ),
    "case-nan": Bad(
        (),
        "field 'top_p' is nan, which JSON cannot carry",
        files={"cases.yaml": case_file(", top_p: .nan")},
    ),
    "case-temperature-out-of-range": Bad(
        (),
        "field 'temperature' must be a number from 0 to 2, got 9",
        files={"cases.yaml": case_file(", temperature: 9")},
    ),
    "case-max-tokens-zero": Bad(
        (),
        "field 'params.max_tokens' must be an integer >= 1, got 0",
        files={"cases.yaml": case_file(", params: {max_tokens: 0}")},
    ),
    "case-params-not-a-mapping": Bad(
        (), "field 'params' must be an object", files={"cases.yaml": case_file(", params: [1]")}
    ),
    "case-params-overrides-the-input": Bad(
        (),
        "field 'params.messages' is set by evaluate-gateway itself",
        files={"cases.yaml": case_file(", params: {messages: []}")},
    ),
    "case-params-sets-stream": Bad(
        (),
        "field 'params.stream' is set by evaluate-gateway itself",
        files={"cases.yaml": case_file(", params: {stream: true}")},
    ),
    "case-endpoint-with-slash": Bad(
        (),
        "field 'endpoint' must be a gateway endpoint name (letters, digits, _ - .), got 'a/b'",
        files={"cases.yaml": case_file("", endpoint="a/b")},
    ),
    "case-unknown-field": Bad(
        (),
        "field 'mesages' is not known",
        files={"cases.yaml": "- {name: a, prompt: x, mesages: []}"},
    ),
    "case-unknown-type": Bad(
        (),
        "field 'type' must be one of",
        files={"cases.yaml": "- {name: a, type: audio, prompt: x}"},
    ),
    "case-duplicate-names": Bad(
        (), "case name 'hello' is used more than once", files={"cases.yaml": GOOD_CASES * 2}
    ),
}


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The run's working directory (so a stray relative file would show up here too)."""
    directory = tmp_path / "run"
    directory.mkdir()
    (directory / "cases.yaml").write_text(GOOD_CASES)
    monkeypatch.chdir(directory)
    return directory


def base_argv(fake: FakeOpenAI, directory: Path) -> list[str]:
    """Good arguments for a one-request run straight against the fake upstream."""
    return [
        *("--url", fake.url, "--route", "openai", "--token", fake.key),
        *("--test-file", str(directory / "cases.yaml")),
        *("--output", str(directory / "results.json")),
        *("--progress", str(directory / "progress.json")),
    ]


def run_evaluate(argv: list[str]) -> int:
    """The exit code, whether the command returned it or argparse exited with it."""
    try:
        return evaluate(argv)
    except SystemExit as leaving:
        return int(leaving.code or 0)


def snapshot(directory: Path) -> dict[str, bytes | None]:
    """Every path under `directory` (hidden partial files too), with file contents."""
    return {
        str(path.relative_to(directory)): path.read_bytes() if path.is_file() else None
        for path in sorted(directory.rglob("*"))
    }


def one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one error line, got:\n{stderr}"
    assert lines[0].startswith(f"{PROG}: error: "), lines[0]
    return lines[0]


def assert_refused_before_sending(
    fake: FakeOpenAI, directory: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> str:
    """Run; check exit 2, one error line, nothing written, nothing sent. Returns the line."""
    before = snapshot(directory)
    code = run_evaluate(argv)
    captured = capsys.readouterr()
    line = one_error_line(captured.err)
    assert code == 2, line
    assert captured.out == ""
    assert snapshot(directory) == before, "a refused run wrote or removed a file"
    assert fake.stats()["requests"] == 0, "a request was sent before the input was refused"
    return line


def test_the_base_arguments_send_and_write(fake: FakeOpenAI, run_dir: Path) -> None:
    """The control: without a bad input the same run sends, so the checks below can fail."""
    assert run_evaluate(base_argv(fake, run_dir)) == 0
    assert fake.stats()["requests"] == 1
    assert {"results.json", "progress.json"} <= set(snapshot(run_dir))


@pytest.mark.parametrize("bad", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_a_malformed_input_is_refused_in_one_line_before_any_request(
    bad: Bad, fake: FakeOpenAI, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in bad.dirs:
        (run_dir / name).mkdir()
    for name, content in bad.files.items():
        path = run_dir / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    argv = [arg.replace("{dir}", str(run_dir)) for arg in bad.argv]
    line = assert_refused_before_sending(fake, run_dir, base_argv(fake, run_dir) + argv, capsys)
    assert bad.expected.replace("{dir}", str(run_dir)) in line
    assert "Traceback" not in line


def test_the_token_is_not_echoed_when_refused(
    fake: FakeOpenAI, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = "sk-tést-fake-secret"
    argv = [*base_argv(fake, run_dir), "--token", token]
    assert token not in assert_refused_before_sending(fake, run_dir, argv, capsys)


def test_a_bad_gateway_url_from_the_environment_is_refused(
    fake: FakeOpenAI,
    run_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GATEWAY_URL", f"127.0.0.1:{free_port()}")
    argv = base_argv(fake, run_dir)[2:]  # no --url: GATEWAY_URL is used
    assert "must start with http://" in assert_refused_before_sending(fake, run_dir, argv, capsys)


@pytest.mark.parametrize("option", ["--output", "--progress"])
def test_a_read_only_directory_is_refused_before_any_request(
    option: str,
    fake: FakeOpenAI,
    run_dir: Path,
    read_only_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = read_only_dir / "results.json"
    argv = [*base_argv(fake, run_dir), option, str(target)]
    line = assert_refused_before_sending(fake, run_dir, argv, capsys)
    assert f"cannot write {option} {target}" in line
    assert f"give {option} a path in a writable directory" in line
    assert list(read_only_dir.iterdir()) == []
