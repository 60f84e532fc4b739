"""`make bench`: every benchmark in one go. Prints the tables and writes them, with the date and
the machine, to benchmarks/results.md.

    .venv/bin/python benchmarks/run.py [--skip-lab] [--quick] [--output FILE]

Sections: deploy timings against the lab (first: the cold deploy also leaves the project's
nginx image on the controller for the next sections), egress pooling on and off on the lab
(upstream TLS connections per 1,000 requests), request paths (wrk next to
evaluate-gateway), the usage-log middleware's overhead (bench_launcher.py), evaluate-gateway's
own speed, and analyze-costs on 1M usage-log lines next to jq (bench_analyze.py).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import bench_deploy
import bench_egress
import bench_evaluate
import bench_http
from _commands import docker, run
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "results.md"
WIDE_CONSOLE = 220


@dataclass
class Section:
    title: str
    columns: Sequence[str]
    rows: list[list[str]] = field(default_factory=list)
    seconds: float = 0.0


def markdown_tables(text: str) -> list[Section]:
    """Sections from a script's --markdown output (_common.print_table's format)."""
    sections: list[Section] = []
    for line in text.splitlines():
        if line.startswith("### "):
            sections.append(Section(line[4:].strip(), []))
        elif line.startswith("|") and sections and not line.startswith("|---"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if sections[-1].columns:
                sections[-1].rows.append(cells)
            else:
                sections[-1].columns = cells
    return sections


def script_sections(script: str, *args: str) -> Measure:
    """A benchmark script of the tools package, run as it is, its tables taken as printed."""

    def measure() -> list[Section]:
        output = run([sys.executable, str(HERE / script), "--markdown", *args]).stdout
        return markdown_tables(output)

    return measure


Measure = Callable[[], list[Section]]


def module_section(
    title: str, columns: Sequence[str], rows: Callable[[], list[list[str]]]
) -> Measure:
    """One of this directory's modules: its title, columns and rows as one section."""

    def measure() -> list[Section]:
        return [Section(title, columns, rows())]

    return measure


def plan(args: argparse.Namespace) -> list[tuple[str, Measure]]:
    seconds = 1.0 if args.quick else 2.0
    steps = []
    if not args.skip_lab:
        steps.append(
            (
                "deploy",
                module_section(bench_deploy.title(), bench_deploy.COLUMNS, bench_deploy.measure),
            )
        )
        egress_requests = 500 if args.quick else 1000
        steps.append(
            (
                "egress pooling",
                module_section(
                    bench_egress.title(egress_requests),
                    bench_egress.COLUMNS,
                    lambda: bench_egress.measure(egress_requests),
                ),
            )
        )
    steps += [
        (
            "request paths",
            module_section(
                bench_http.title(seconds), bench_http.COLUMNS, lambda: bench_http.measure(seconds)
            ),
        ),
        (
            "middleware overhead",
            script_sections("bench_launcher.py", "--requests", "200" if args.quick else "500"),
        ),
        (
            "evaluate-gateway",
            module_section(bench_evaluate.title(), bench_evaluate.COLUMNS, bench_evaluate.measure),
        ),
        (
            "cost analysis",
            script_sections("bench_analyze.py", "--lines", "100000" if args.quick else "1000000"),
        ),
    ]
    return steps


def machine() -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    wrk = run(["wrk", "--version"], check=False).stdout.splitlines()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "os": f"{platform.platform()}",
        "python": platform.python_version(),
        "docker": docker("version", "--format", "{{.Server.Version}}", check=False).strip(),
        "wrk": wrk[0].split(" Copyright")[0] if wrk else "missing",
        "load average at start": " ".join(f"{value:.2f}" for value in os.getloadavg()),
    }


def to_markdown(facts: dict[str, str], sections: list[Section], command: str) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Produced by `{command}` (benchmarks/run.py) in one go; rerun it to refresh this file.",
        "",
        *(f"- **{name}**: {value}" for name, value in facts.items()),
    ]
    for section in sections:
        lines += ["", f"## {section.title}", "", f"_{section.seconds:.0f} s to measure._", ""]
        lines.append("| " + " | ".join(section.columns) + " |")
        lines.append("|" + "|".join("---" for _ in section.columns) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in section.rows]
    return "\n".join(lines) + "\n"


def print_section(console: Console, section: Section) -> None:
    table = Table(title=section.title, title_justify="left")
    for index, column in enumerate(section.columns):
        table.add_column(column, justify="left" if index == 0 else "right")
    for row in section.rows:
        table.add_row(*row)
    console.print(table)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-lab", action="store_true", help="leave out the deploy timings")
    parser.add_argument("--quick", action="store_true", help="shorter runs (a smoke test)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="markdown file")
    args = parser.parse_args()
    console = Console() if sys.stdout.isatty() else Console(width=WIDE_CONSOLE)
    facts = machine()
    started = time.perf_counter()
    sections: list[Section] = []
    for name, measure in plan(args):
        console.print(f"[bold]Measuring {name}...[/bold]")
        section_started = time.perf_counter()
        measured = measure()
        for section in measured:
            section.seconds = (time.perf_counter() - section_started) / len(measured)
            print_section(console, section)
        sections += measured
    facts["total run time"] = f"{time.perf_counter() - started:.0f} s"
    command = "make bench" + (" (--quick)" if args.quick else "")
    args.output.write_text(to_markdown(facts, sections, command))
    console.print(f"Wrote {args.output} ({facts['total run time']} in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
