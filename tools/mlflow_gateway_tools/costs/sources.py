"""Where usage records come from: usage-log files, Docker logs (one container or every replica
of a compose service), and evaluate-gateway results files. Everything is streamed."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from mlflow_gateway_tools import ledger_files
from mlflow_gateway_tools.cli_support import CommandError
from mlflow_gateway_tools.costs.aggregate import (
    CANONICAL_TS_LENGTH,
    TOKEN_LIMIT,
    Aggregator,
    TimeWindow,
    UsageRecord,
)
from mlflow_gateway_tools.costs.jsonline import NotJSON, decode_usage_line, parse_from
from mlflow_gateway_tools.input_files import read_json
from mlflow_gateway_tools.timeutil import format_iso, parse_iso
from mlflow_gateway_tools.usage import model_and_usage

USAGE_EVENT = "gateway.request"
MAX_EXAMPLES = 5
EXAMPLE_CHARS = 120
DOCKER_TIMEOUT_SECONDS = 30
TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens")


@dataclass
class ParseIssues:
    """Lines that could not be used: counted, and the first few kept with line numbers."""

    count: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)
    # Files whose end could not be read (a corrupt or truncated .gz): source, reason, lines.
    damaged_files: list[dict[str, Any]] = field(default_factory=list)

    def damaged(self, origin: str, reason: str, lines_read: int) -> None:
        self.damaged_files.append({"source": origin, "reason": reason, "lines": lines_read})

    def merge(self, other: ParseIssues) -> None:
        self.count += other.count
        self.examples += other.examples[: MAX_EXAMPLES - len(self.examples)]
        self.damaged_files += other.damaged_files

    def add(self, origin: str, line_number: int, reason: str, text: str) -> None:
        self.count += 1
        if len(self.examples) < MAX_EXAMPLES:
            excerpt = text.strip()
            if len(excerpt) > EXAMPLE_CHARS:
                excerpt = excerpt[:EXAMPLE_CHARS] + "..."
            self.examples.append(
                {"source": origin, "line": line_number, "reason": reason, "text": excerpt}
            )


class BadRecord(ValueError):
    """A JSON object that is not a usable usage record; the message says which field."""


def _tokens(entry: dict[str, Any]) -> tuple[int, int, int, int]:
    """The four token counts (absent or null = 0); the hot path of a million-line log."""
    get = entry.get
    counts = (
        get("prompt_tokens") or 0,
        get("completion_tokens") or 0,
        get("cached_tokens") or 0,
        get("reasoning_tokens") or 0,
    )
    prompt, completion, cached, reasoning = counts
    if (
        type(prompt) is not int
        or type(completion) is not int
        or type(cached) is not int
        or type(reasoning) is not int
        # The OR is negative if any count is, and >= the bound if any count is.
        or not 0 <= (prompt | completion | cached | reasoning) < TOKEN_LIMIT
    ):
        bad = next(
            (name, value)
            for name, value in zip(TOKEN_FIELDS, counts, strict=True)
            if type(value) is not int or not 0 <= value < TOKEN_LIMIT
        )
        raise BadRecord(f"{bad[0]} must be a whole number >= 0, got {bad[1]!r}")
    return counts


def _canonical_ts(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRecord(f"ts must be an ISO 8601 string, got {value!r}")
    if len(value) == CANONICAL_TS_LENGTH and value[-1] == "Z":
        return value  # the usage log's own format: the fast path
    try:
        return format_iso(parse_iso(value))
    except (ValueError, OverflowError):  # overflow: year 9999 or 1 moved into UTC
        raise BadRecord(f"ts {value!r} is not an ISO 8601 time") from None


def _status(entry: dict[str, Any]) -> int | None:
    status = entry.get("status")
    if status is not None and type(status) is not int:
        raise BadRecord(f"status must be an integer, got {status!r}")
    return status


def _names(model: Any, endpoint: Any, client: Any) -> tuple[str | None, str | None, str | None]:
    """Model, endpoint and client as they may be grouped: strings or absent. Anything else
    (a number, a list) would make the grouping mix types; the line is malformed instead."""
    if (
        (model is None or type(model) is str)
        and (endpoint is None or type(endpoint) is str)
        and (client is None or type(client) is str)
    ):
        return model, endpoint, client
    name, value = next(
        (name, value)
        for name, value in (("model", model), ("endpoint", endpoint), ("client", client))
        if value is not None and type(value) is not str
    )
    raise BadRecord(f"{name} must be a string, got {value!r}")


def record_from_log_entry(
    entry: dict[str, Any], origin: str, model_override: str | None
) -> UsageRecord:
    """A usage-log line (the launcher's JSON) as a UsageRecord."""
    status = _status(entry)
    get = entry.get
    prompt, completion, cached, reasoning = _tokens(entry)
    model, endpoint, client = _names(
        model_override or get("model_returned") or get("model_configured"),
        get("endpoint"),
        get("client"),
    )
    return UsageRecord(
        _canonical_ts(get("ts")),
        model,
        endpoint,
        client,
        status,
        status is None or status >= 400 or get("error") is not None,
        prompt,
        completion,
        cached,
        reasoning,
        origin,
    )


def record_from_result(
    entry: dict[str, Any], origin: str, model_override: str | None
) -> UsageRecord:
    """A results-file entry: evaluate-gateway's flat record, or one holding a raw `response`."""
    if "response" in entry and not any(name in entry for name in TOKEN_FIELDS):
        model, usage = model_and_usage(entry.get("response"))
        entry = {**entry, "model_returned": model, **usage.as_dict()}
    status = _status(entry)
    prompt, completion, cached, reasoning = _tokens(entry)
    model, endpoint, client = _names(
        model_override or entry.get("model_returned") or entry.get("model"),
        entry.get("endpoint"),
        entry.get("client"),
    )
    return UsageRecord(
        ts=_canonical_ts(entry.get("ts")),
        model=model,
        endpoint=endpoint,
        client=client,
        status=status,
        failed=entry.get("ok") is False
        or entry.get("success") is False
        or (status is not None and status >= 400)
        or bool(entry.get("error")),
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        reasoning_tokens=reasoning,
        origin=origin,
    )


def fold_log_lines(
    origin: str,
    lines: Iterable[bytes],
    issues: ParseIssues,
    model_override: str | None,
    aggregator: Aggregator,
) -> None:
    """Fold the usage records of JSON lines into `aggregator`; other JSON events are skipped,
    junk is counted. A read error part way (a corrupt or truncated .gz, an I/O error) ends the
    file: the lines before it count and the file is listed in `issues.damaged_files`."""
    number = 0
    add_usage_line = aggregator.add_usage_line
    try:
        for number, raw in enumerate(lines, start=1):
            line = decode_usage_line(raw)
            if line is not None:
                if line.event != USAGE_EVENT:
                    continue
                if add_usage_line(line, model_override):
                    continue
            start = raw.find(b"{")  # tolerate prefixes such as `gateway-1  | ` from compose logs
            if start < 0:
                if raw.strip():
                    issues.add(origin, number, "not JSON", raw.decode("utf-8", "replace"))
                continue
            try:
                entry = parse_from(raw, start)
            except NotJSON:
                issues.add(origin, number, "not JSON", raw.decode("utf-8", "replace"))
                continue
            if type(entry) is not dict or entry.get("event") != USAGE_EVENT:
                continue
            try:
                record = record_from_log_entry(entry, f"{origin}:{number}", model_override)
            except BadRecord as error:
                issues.add(origin, number, str(error), raw.decode("utf-8", "replace"))
            else:
                aggregator.add(record)
    except (OSError, EOFError, zlib.error) as error:
        issues.damaged(origin, str(error) or type(error).__name__, number)


def _open_log(path: Path) -> IO[bytes] | gzip.GzipFile:
    if str(path) == "-":
        return sys.stdin.buffer
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    try:
        return path.open("rb")
    except FileNotFoundError:
        # A ledger day compressed between listing and reading: its .gz holds every line.
        compressed = path.with_name(path.name + ".gz")
        if path.name.endswith(ledger_files.PLAIN_SUFFIX) and compressed.is_file():
            return gzip.open(compressed, "rb")
        raise


def fold_log_file(
    path: Path, issues: ParseIssues, model_override: str | None, aggregator: Aggregator
) -> None:
    try:
        handle = _open_log(path)
    except OSError as error:
        raise CommandError(
            f"cannot read --log-file {path}: {error.strerror}; give a usage-log file "
            "(e.g. from `docker logs mlflow-gateway 2>/dev/null > gateway.log`)"
        ) from None
    with handle:
        fold_log_lines(str(path), handle, issues, model_override, aggregator)


def iter_results_file(
    path: Path, issues: ParseIssues, model_override: str | None
) -> Iterator[UsageRecord]:
    document = read_json(path, "--response-file", "run evaluate-gateway --output FILE first")
    entries = document
    if isinstance(document, dict):
        entries = document.get("requests", document.get("results"))
    if not isinstance(entries, list):
        raise CommandError(
            f"--response-file {path} has no list of requests; expected evaluate-gateway's "
            'results ({"requests": [...]}) or a JSON list of responses'
        )
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            issues.add(str(path), index, "entry is not a JSON object", json.dumps(entry))
            continue
        try:
            yield record_from_result(entry, f"{path}#{index}", model_override)
        except BadRecord as error:
            issues.add(str(path), index, str(error), json.dumps(entry))


def _docker(*args: str) -> subprocess.CompletedProcess[str]:
    docker = shutil.which("docker")
    if docker is None:
        raise CommandError(
            "reading gateway logs needs the docker CLI, which is not on PATH; install it, "
            "or save the log (docker logs NAME 2>/dev/null > gateway.log) and use --log-file"
        )
    try:
        result = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [docker, *args],
            capture_output=True,
            text=True,
            timeout=DOCKER_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise CommandError(
            f"`docker {' '.join(args)}` did not answer in {DOCKER_TIMEOUT_SECONDS}s; "
            "is the Docker engine running?"
        ) from None
    return result


def _docker_problem(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    return lines[0] if lines else f"exit code {result.returncode}"


def container_exists(name: str) -> bool:
    return _docker("inspect", "--type", "container", "--format", "{{.Name}}", name).returncode == 0


def containers_of_service(service: str, project: str | None) -> list[str]:
    """Every container (running or stopped) of a compose service: all its replicas."""
    filters = ["--filter", f"label=com.docker.compose.service={service}"]
    if project:
        filters += ["--filter", f"label=com.docker.compose.project={project}"]
    result = _docker("ps", "--all", *filters, "--format", "{{.Names}}")
    if result.returncode != 0:
        raise CommandError(f"cannot list containers: {_docker_problem(result)}")
    return sorted(name for name in result.stdout.split() if name)


def fold_docker_logs(
    container: str,
    issues: ParseIssues,
    model_override: str | None,
    window: TimeWindow,
    aggregator: Aggregator,
) -> None:
    """Stream a container's stdout (the usage log) line by line; its stderr is not usage."""
    if not container_exists(container):
        raise CommandError(
            f"no container named {container!r}; see `docker ps -a`, or use --service to read "
            "every replica of a compose service"
        )
    argv = [shutil.which("docker") or "docker", "logs"]
    argv += ["--since", window.since] if window.since else []
    argv += ["--until", window.until] if window.until else []
    with subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        [*argv, container], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    ) as process:
        assert process.stdout is not None
        origin = f"docker:{container}"
        fold_log_lines(origin, process.stdout, issues, model_override, aggregator)
    if process.returncode != 0:
        raise CommandError(f"`docker logs {container}` failed with exit code {process.returncode}")
