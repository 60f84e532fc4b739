"""Names a client sent (model, endpoint, client) are data: shown literally in the terminal and
in the HTML report, never read as Rich markup, HTML or terminal control sequences (issue 9)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests
from test_costs import usage_line, write_log

from conftest import LauncherGateway
from mlflow_gateway_tools.costs.cli import main as analyze_costs
from mlflow_gateway_tools.costs.display import MAX_NAME_CHARS

CRAFTED = {
    "rich closing tag": ("[/x]", "[/x]"),
    "rich style": ("[bold red]x[/]", "[bold red]x[/]"),
    "html script": ("<script>alert(1)</script>", "<script>alert(1)</script>"),
    "script end and comment": ("</script><!--", "</script><!--"),
    "ansi colour": ("\x1b[31mred", "\\x1b[31mred"),
    "newline and tab": ("a\nb\tc", "a\\nb\\tc"),
    "emoji code": (":thumbs_up:", ":thumbs_up:"),
}
FIELDS = ("model_returned", "endpoint", "client")


class TextCollector(HTMLParser):
    """The page's text content and whether any element other than the report's own appeared."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(html: str) -> TextCollector:
    collector = TextCollector()
    collector.feed(html)
    collector.close()
    return collector


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize(("name", "shown"), CRAFTED.values(), ids=list(CRAFTED))
def test_a_crafted_name_is_shown_literally(
    field: str, name: str, shown: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write_log(tmp_path / "usage.log", usage_line(**{field: name}), usage_line())
    page = tmp_path / "report.html"

    assert analyze_costs(["--log-file", str(log), "--html", str(page)]) == 0
    terminal = capsys.readouterr().out
    assert shown in terminal
    assert "\x1b" not in terminal, "no escape sequence reaches the terminal"

    html = page.read_text()
    collector = parsed(html)
    assert "script" not in collector.tags, "the page has no script, and a name adds none"
    assert shown in "".join(collector.text)
    assert "<script>alert" not in html and "</script><!--" not in html

    assert analyze_costs(["--log-file", str(log), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    grouping = {"model_returned": "by_model", "endpoint": "by_endpoint", "client": "by_client"}
    key = grouping[field].removeprefix("by_")
    assert name in {row[key] for row in report[grouping[field]]}, "JSON keeps the exact value"


def test_a_very_long_name_is_cut_on_screen_but_kept_in_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "team-" + "x" * 5000
    log = write_log(tmp_path / "usage.log", usage_line(client=name))
    assert analyze_costs(["--log-file", str(log)]) == 0
    terminal = capsys.readouterr().out
    assert "x" * (MAX_NAME_CHARS * 2) not in terminal
    assert "(5,005" in terminal, "the cut name says how long it is"
    assert analyze_costs(["--log-file", str(log), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["by_client"][0]["client"] == name


def test_crafted_names_through_the_real_gateway(
    gateway: LauncherGateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's reproduction: an endpoint `[/x]` from the URL and a client header with
    markup and HTML, through the launcher, then analyze-costs over its usage output."""
    gateway.mark()
    body = {"messages": [{"role": "user", "content": "hi"}]}
    requests.post(f"{gateway.url}/gateway/%5B%2Fx%5D/invocations", json=body, timeout=10)
    for client in ("[bold]<b>x</b>", "[/x]"):
        requests.post(
            f"{gateway.url}/gateway/chat/invocations",
            json=body,
            headers={"X-Gateway-Client": client},
            timeout=10,
        )
    lines = gateway.new_usage_lines(3)
    [crafted_endpoint] = [
        line["endpoint"] for line in lines if line["path"].startswith("/gateway/[")
    ]
    assert crafted_endpoint.startswith("[")  # what the launcher makes of the decoded path
    assert {line["client"] for line in lines} >= {"[bold]<b>x</b>", "[/x]"}
    log = tmp_path / "usage.log"
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    page = tmp_path / "report.html"

    assert analyze_costs(["--log-file", str(log), "--html", str(page)]) == 0
    terminal = capsys.readouterr().out
    for name in (crafted_endpoint, "[bold]<b>x</b>", "[/x]"):
        assert name in terminal
    collector = parsed(page.read_text())
    assert "b" not in collector.tags, "the client's <b> is text, not an element"
    assert "[bold]<b>x</b>" in "".join(collector.text)
