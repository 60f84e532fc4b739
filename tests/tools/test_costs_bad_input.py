"""analyze-costs on bad input (issue 9): a bad option or file gives ONE line naming the value
and the fix, exit 2, nothing written, no traceback; a bad line in the data is counted as
malformed and the run goes on. (A damaged .gz is a data problem too: the lines before the
damage count and the file is named; see test_costs_ledger.py.)"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_costs import usage_line, write_log

from mlflow_gateway_tools.costs.cli import main as analyze_costs

Setup = Callable[[Path], list[str]]


def pricing(text: str) -> Setup:
    def setup(tmp_path: Path) -> list[str]:
        path = tmp_path / "prices.yaml"
        path.write_bytes(text.encode("latin-1"))
        return ["--pricing", str(path)]

    return setup


def output_at(option: str, where: str) -> Setup:
    """--html/--csv naming a directory or a file in a missing directory; the input does not
    exist, so the output's message proves it was checked before any input was read."""

    def setup(tmp_path: Path) -> list[str]:
        target = tmp_path if where == "directory" else tmp_path / "missing" / "report"
        return ["--log-file", str(tmp_path / "never-read.log"), option, str(target)]

    return setup


def options(*argv: str) -> Setup:
    return lambda _tmp_path: list(argv)


def a_file_as_ledger(tmp_path: Path) -> list[str]:
    path = tmp_path / "ledger"
    path.write_text("not a directory")
    return ["--ledger", str(path)]


CASES: dict[str, tuple[Setup, str]] = {
    "since 1000000d": (
        options("--since", "1000000d"),
        "--since: '1000000d' reaches back before the year 1; use a smaller age",
    ),
    "since in seconds past any date": (
        options("--since", "99999999999999999999s"),
        "reaches back before the year 1",
    ),
    "until at the end of time": (
        options("--until", "9999-12-31T23:59:59-01:00"),
        "--until: '9999-12-31T23:59:59-01:00' is out of range",
    ),
    "until before since": (
        options("--since", "2026-11-28", "--until", "2026-11-27"),
        "--since 2026-11-28 is not before --until 2026-11-27; swap them",
    ),
    "ages the wrong way round": (options("--since", "1d", "--until", "2d"), "swap them"),
    "NaN price": (
        pricing("models:\n  gpt-4o: {input: .nan, output: 1}\n"),
        "model 'gpt-4o' field 'input' must be a number >= 0 (USD per 1M tokens), got nan",
    ),
    "infinite price": (
        pricing("models:\n  gpt-4o: {input: 1, output: .inf}\n"),
        "field 'output' must be a number >= 0 (USD per 1M tokens), got inf",
    ),
    "negative price": (
        pricing("models:\n  gpt-4o: {input: 1, cached_input: -0.5}\n"),
        "field 'cached_input' must be a number >= 0",
    ),
    "pricing not UTF-8": (pricing("models:\n  caf\xe9: {input: 1}\n"), "is not UTF-8 text"),
    "html is a directory": (
        output_at("--html", "directory"),
        "give --html a file name, not a directory",
    ),
    "csv is a directory": (
        output_at("--csv", "directory"),
        "give --csv a file name, not a directory",
    ),
    "html in a missing directory": (output_at("--html", "missing"), "No such file or directory"),
    "csv in a missing directory": (output_at("--csv", "missing"), "or give --csv an existing"),
    "budget NaN": (options("--budget", "NaN"), "--budget 'NaN' must be a positive amount"),
    "project without service": (options("--project", "x"), "add --service NAME or drop"),
    "json and csv on stdout": (options("--json", "--csv"), "give --csv a FILE"),
    "merge with other inputs": (
        options("--costs-json", "a.json", "--model", "gpt-4o"),
        "--costs-json merges finished reports and cannot take --model; give those",
    ),
    "merge input without a file": (options("--costs-json", "gw-1="), "give FILE or LABEL=FILE"),
    "ledger that is a file": (a_file_as_ledger, "cannot read --ledger"),
    "log file that is a directory": (
        lambda tmp_path: ["--log-file", str(tmp_path)],
        "cannot read --log-file",
    ),
}


@pytest.fixture
def outputs(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A CSV and an HTML path in their own directory; the test asserts both stay absent."""
    directory = tmp_path / "out"
    directory.mkdir()
    yield directory / "costs.csv", directory / "costs.html"
    assert list(directory.iterdir()) == [], "a refused run writes nothing"


@pytest.mark.parametrize(("setup", "expected"), CASES.values(), ids=list(CASES))
def test_a_bad_option_or_file_is_one_line_and_exit_2(
    setup: Setup,
    expected: str,
    tmp_path: Path,
    outputs: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = setup(tmp_path)
    if not any(option in argv for option in ("--log-file", "--ledger", "--costs-json")):
        argv = ["--log-file", str(write_log(tmp_path / "usage.log", usage_line())), *argv]
    if "--html" not in argv and "--csv" not in argv:
        argv += ["--csv", str(outputs[0]), "--html", str(outputs[1])]
    assert analyze_costs(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("analyze-costs: error: ")
    assert captured.err.count("\n") == 1, captured.err
    assert expected in captured.err
    assert captured.out == ""


@pytest.mark.parametrize("option", ["--html", "--csv"])
def test_an_output_in_a_read_only_directory_is_refused_before_reading(
    option: str, read_only_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = read_only_dir / "report"
    assert analyze_costs(["--log-file", str(tmp_path / "never-read.log"), option, str(target)]) == 2
    error = capsys.readouterr().err
    assert f"cannot write {option} {target}" in error
    assert f"give {option} a path in a writable directory" in error
    assert error.count("\n") == 1


BAD_LINES = {
    "model is a number": usage_line(model_returned=42),
    "model is a list": usage_line(model_returned=["gpt-4o"], model_configured=None),
    "endpoint is an object": usage_line(endpoint={"name": "chat"}),
    "client is a number": usage_line(client=7),
    "ts past year 9999 in UTC": usage_line(ts="9999-12-31T23:59:59-01:00"),
    "nested too deeply": '{"event": "gateway.request", "x": ' + "[" * 100_000 + "]" * 100_000,
    "token count is a float": usage_line(prompt_tokens=1e400),
}


@pytest.mark.parametrize("line", BAD_LINES.values(), ids=list(BAD_LINES))
def test_a_bad_value_in_a_line_counts_as_malformed(
    line: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write_log(tmp_path / "usage.log", usage_line(), line, usage_line())
    assert analyze_costs(["--log-file", str(log), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["totals"]["requests"] == 2
    assert report["malformed"]["count"] == 1
    assert report["malformed"]["examples"][0]["line"] == 2
