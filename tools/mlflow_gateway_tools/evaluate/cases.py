"""Test cases: the built-in ones and a validated --test-file (JSON or YAML)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

KINDS = ("chat", "completions", "embeddings")
INPUT_FIELD = {"chat": "messages", "completions": "prompt", "embeddings": "input"}
# Request fields a case may set next to its input (OpenAI names; MLflow passes them on).
PARAMETERS = (
    "temperature",
    "max_tokens",
    "max_completion_tokens",
    "top_p",
    "n",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "user",
    "dimensions",
)
CASE_FIELDS = ("name", "type", "endpoint", "messages", "prompt", "input", "params", *PARAMETERS)
ROLES = ("system", "user", "assistant", "tool", "developer")


class CaseFileError(ValueError):
    """A test file that cannot be used; the message names the case and field."""


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # one of KINDS
    endpoint: str
    body: dict[str, Any] = field(default_factory=dict)  # input field + parameters


def builtin_cases(endpoints: Mapping[str, str]) -> list[Case]:
    """The seed's simple and multi-turn chats, plus a completion and an embedding."""
    return [
        Case(
            "simple_chat",
            "chat",
            endpoints["chat"],
            {"messages": [{"role": "user", "content": "Hello"}]},
        ),
        Case(
            "multi_turn",
            "chat",
            endpoints["chat"],
            {
                "messages": [
                    {"role": "user", "content": "What is AI?"},
                    {"role": "assistant", "content": "AI is artificial intelligence."},
                    {"role": "user", "content": "Give me an example."},
                ],
                "temperature": 0.7,
                "max_tokens": 150,
            },
        ),
        Case(
            "completion",
            "completions",
            endpoints["completions"],
            {"prompt": "Write one sentence about the sea.", "max_tokens": 50},
        ),
        Case(
            "embedding",
            "embeddings",
            endpoints["embeddings"],
            {"input": ["MLflow AI Gateway", "cost tracking"]},
        ),
    ]


def _problem(index: int, raw: Any, field_name: str | None, message: str) -> str:
    name = raw.get("name") if isinstance(raw, Mapping) else None
    label = f"case {index}" + (f" ({name!r})" if isinstance(name, str) else "")
    return f"{label}: " + (f"field {field_name!r} " if field_name else "") + message


def _check_messages(value: Any) -> str | None:
    if not isinstance(value, list) or not value:
        return "must be a non-empty list of {role, content} objects"
    for position, message in enumerate(value):
        if not isinstance(message, Mapping):
            return f"item {position} must be an object with role and content"
        if message.get("role") not in ROLES:
            return f"item {position} has role {message.get('role')!r}; use one of {ROLES}"
        if not isinstance(message.get("content"), str | list):
            return f"item {position} needs a content string"
    return None


def _check_input(kind: str, value: Any) -> str | None:
    if kind == "chat":
        return _check_messages(value)
    if kind == "completions":
        return None if isinstance(value, str) and value else "must be a non-empty string"
    if isinstance(value, str) and value:
        return None
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return None
    return "must be a non-empty string or list of strings"


def _infer_kind(raw: Mapping[str, Any]) -> str | None:
    if "type" in raw:
        return raw["type"]
    present = [kind for kind, name in INPUT_FIELD.items() if name in raw]
    return present[0] if len(present) == 1 else None


def _case_from_raw(
    index: int, raw: Any, endpoints: Mapping[str, str], problems: list[str]
) -> Case | None:
    def fail(field_name: str | None, message: str) -> None:
        problems.append(_problem(index, raw, field_name, message))

    if not isinstance(raw, Mapping):
        fail(None, f"must be an object, got {type(raw).__name__}")
        return None
    for unknown in sorted(set(raw) - set(CASE_FIELDS), key=str):
        fail(str(unknown), f"is not known; allowed: {', '.join(CASE_FIELDS)}")
    name = raw.get("name", f"case_{index}")
    if not isinstance(name, str) or not name:
        fail("name", "must be a non-empty string")
    kind = _infer_kind(raw)
    if kind not in KINDS:
        fail("type", f"must be one of {KINDS} (or give exactly one of messages/prompt/input)")
        return None
    input_name = INPUT_FIELD[kind]
    if input_name not in raw:
        fail(input_name, f"is required for a {kind} case")
    elif (message := _check_input(kind, raw[input_name])) is not None:
        fail(input_name, message)
    endpoint = raw.get("endpoint", endpoints[kind])
    if not isinstance(endpoint, str) or not endpoint:
        fail("endpoint", "must be a non-empty endpoint name")
    params = raw.get("params", {})
    if not isinstance(params, Mapping):
        fail("params", "must be an object of request fields (temperature, max_tokens, ...)")
        params = {}
    body = {input_name: raw.get(input_name), **params}
    body.update({key: raw[key] for key in PARAMETERS if key in raw})
    for key in ("max_tokens", "max_completion_tokens", "n"):
        value = body.get(key)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 1
        ):
            fail(key, f"must be an integer >= 1, got {value!r}")
    temperature = body.get("temperature")
    if temperature is not None and (
        not isinstance(temperature, int | float)
        or isinstance(temperature, bool)
        or not 0 <= temperature <= 2
    ):
        fail("temperature", f"must be a number from 0 to 2, got {temperature!r}")
    return Case(str(name), kind, str(endpoint), body)


def _parse_file(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as error:
        raise CaseFileError(f"cannot read --test-file {path}: {error.strerror}") from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:
        kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
        raise CaseFileError(f"--test-file {path} is not valid {kind}: {error}") from None


def load_cases(path: Path, endpoints: Mapping[str, str]) -> list[Case]:
    """Read and validate a test file: a list of cases, or {"cases": [...]}.

    Every problem is reported at once, each naming the case (index and name) and field.
    """
    document = _parse_file(path)
    raw_cases = document.get("cases") if isinstance(document, Mapping) else document
    if not isinstance(raw_cases, list) or not raw_cases:
        raise CaseFileError(
            f"--test-file {path} must hold a non-empty list of cases (or {{cases: [...]}}); "
            'e.g. [{"name": "hello", "messages": [{"role": "user", "content": "Hi"}]}]'
        )
    problems: list[str] = []
    cases = [_case_from_raw(index, raw, endpoints, problems) for index, raw in enumerate(raw_cases)]
    names = [case.name for case in cases if case is not None]
    for duplicate in sorted({name for name in names if names.count(name) > 1}):
        problems.append(f"case name {duplicate!r} is used more than once; names must be unique")
    if problems:
        raise CaseFileError(f"--test-file {path} has problems:\n  " + "\n  ".join(problems))
    return [case for case in cases if case is not None]
