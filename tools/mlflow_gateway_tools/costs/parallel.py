"""Fold many usage-log files on all the cores: each worker process folds whole files into its
own Aggregator and the parent merges them. Counters are integers and pricing happens once at
the end, so the result is exactly that of one process reading every file in turn."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat
from pathlib import Path

from mlflow_gateway_tools.costs import sources
from mlflow_gateway_tools.costs.aggregate import Aggregator, TimeWindow

# Below this much input a worker's start costs more than it saves.
PARALLEL_MIN_BYTES = 32 * 1024 * 1024


def fold_file(
    path: Path, model_override: str | None, window: TimeWindow, keep_all: bool
) -> tuple[Aggregator, sources.ParseIssues]:
    """One file folded into a fresh Aggregator (what a worker does)."""
    aggregator = Aggregator(window, keep_all_requests=keep_all)
    issues = sources.ParseIssues()
    sources.fold_log_file(path, issues, model_override, aggregator)
    return aggregator, issues


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _input_bytes(paths: Sequence[Path]) -> int:
    total = 0
    for path in paths:
        with contextlib.suppress(OSError):  # reading it will say what is wrong
            total += path.stat().st_size
    return total


def fold_files(
    paths: Sequence[Path],
    model_override: str | None,
    aggregator: Aggregator,
    issues: sources.ParseIssues,
    min_bytes: int = PARALLEL_MIN_BYTES,
) -> None:
    """Fold `paths` into `aggregator` and `issues`, in parallel when there is enough to read."""
    workers = min(_cores(), len(paths))
    if workers < 2 or any(str(path) == "-" for path in paths) or _input_bytes(paths) < min_bytes:
        for path in paths:
            sources.fold_log_file(path, issues, model_override, aggregator)
        return
    # fork: the workers start with the modules already imported and no pickled state to load.
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        folded = pool.map(
            fold_file,
            paths,
            repeat(model_override),
            repeat(aggregator.window),
            repeat(aggregator.keep_all_requests),
        )
        for part, part_issues in folded:  # in file order: the same report as one process
            aggregator.merge(part)
            issues.merge(part_issues)
