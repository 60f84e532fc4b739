"""Whether a request loop served clients all through an operation, not only before it.

A zero-failure proof means little when the loop's requests all ran before the operation began
or stalled while it ran. The proof asks for at least N successful requests that started after
the operation began and ended before it finished, and N more that started after it.

The lab drills call `answered_within` on their loop's records; molecule's under_load.yml runs
this file on evaluate-gateway's --output:

    python tests/served_window.py RESULTS.json --began EPOCH --ended EPOCH --at-least N
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import NamedTuple, Protocol


class Timed(Protocol):
    """A request's interval (epoch seconds) and outcome: the drills' TimedRecord, an Interval."""

    @property
    def started(self) -> float: ...
    @property
    def ended(self) -> float: ...
    @property
    def ok(self) -> bool: ...


class Interval(NamedTuple):
    started: float  # epoch seconds
    ended: float
    ok: bool


def answered_within(requests: Iterable[Timed], began: float, ended: float) -> int:
    """Successful requests that started at or after `began` and ended by `ended`."""
    return sum(r.ok and began <= r.started and r.ended <= ended for r in requests)


def answered_after(requests: Iterable[Timed], moment: float) -> int:
    """Successful requests that started after `moment`."""
    return sum(r.ok and r.started > moment for r in requests)


def interval_of(record: dict) -> Interval:
    """One request of evaluate-gateway's results (ts: its start, ISO UTC; latency_ms)."""
    started = datetime.fromisoformat(record["ts"].replace("Z", "+00:00")).timestamp()
    return Interval(started, started + record["latency_ms"] / 1000, bool(record["ok"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="evaluate-gateway --output FILE")
    parser.add_argument("--began", type=float, required=True, help="epoch seconds")
    parser.add_argument("--ended", type=float, required=True, help="epoch seconds")
    parser.add_argument("--at-least", type=int, default=10)
    args = parser.parse_args(argv)
    requests = [interval_of(r) for r in json.loads(args.results.read_text())["requests"]]
    within = answered_within(requests, args.began, args.ended)
    after = answered_after(requests, args.ended)
    failed = sum(not r.ok for r in requests)
    print(
        json.dumps({"requests": len(requests), "failed": failed, "within": within, "after": after})
    )
    if within < args.at_least or after < args.at_least:
        print(
            f"served {within} requests while the operation ran ({args.ended - args.began:.1f} s) "
            f"and {after} after it; the proof needs at least {args.at_least} of each",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
