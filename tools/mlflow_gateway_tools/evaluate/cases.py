"""Test cases: the built-in ones and a validated --test-file (JSON or YAML)."""

from __future__ import annotations

import datetime
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlflow_gateway_tools.input_files import read_text

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
# evaluate-gateway sets these itself (the endpoint, --stream, the case's input): a copy under
# params would silently override them.
RESERVED_PARAMS = ("model", "stream", *INPUT_FIELD.values())
# What MLflow's gateway accepts as an endpoint name (mlflow.gateway.utils.is_valid_endpoint_name).
ENDPOINT_NAME = re.compile(r"[A-Za-z0-9_.-]+")
JSON_SCALARS = (str, int, float, bool, type(None))


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


def endpoint_name_problem(name: object) -> str | None:
    """Why `name` cannot be a gateway endpoint (it goes into the URL path), or None."""
    if isinstance(name, str) and ENDPOINT_NAME.fullmatch(name):
        return None
    return f"must be a gateway endpoint name (letters, digits, _ - .), got {name!r}"


def _members(value: Mapping[Any, Any] | list[Any], where: str) -> Iterator[tuple[str, Any, Any]]:
    """(path, key, item) for each member; a list item's key is its position."""
    if isinstance(value, Mapping):
        return ((f"{where}.{key}", key, item) for key, item in value.items())
    return ((f"{where}[{position}]", position, item) for position, item in enumerate(value))


def _first_non_json(value: Any, where: str) -> tuple[str, Any] | None:
    """The first place in `value` a JSON request body cannot carry (a YAML date, binary or
    set, NaN or infinity), as (dotted path, value); None when all of it can."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (where, value)
    if isinstance(value, JSON_SCALARS):
        return None
    if not isinstance(value, Mapping | list):
        return where, value
    for inner, key, item in _members(value, where):
        if not isinstance(key, JSON_SCALARS):  # json.dumps refuses a date as a key too
            return inner, key
        if found := _first_non_json(item, inner):
            return found
    return None


def _non_json_message(value: Any) -> str:
    """What the value is and how to write it instead."""
    if isinstance(value, datetime.date):  # YAML reads an unquoted 2026-11-01 as a date
        return f"is a YAML date ({value}), not JSON; quote it: '{value}'"
    if isinstance(value, float):
        return f"is {value}, which JSON cannot carry; give a finite number"
    return (
        f"is a YAML {type(value).__name__} ({value!r}), not JSON; "
        "give a string, number, boolean, list or object"
    )


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
        declared = raw["type"]
        # Anything but a string is refused as "not one of KINDS", just like an unknown name.
        return declared if isinstance(declared, str) else None
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
    input_problem = (
        f"is required for a {kind} case"
        if input_name not in raw
        else _check_input(kind, raw[input_name])
    )
    if input_problem is not None:
        fail(input_name, input_problem)
    endpoint = raw.get("endpoint", endpoints[kind])
    if (message := endpoint_name_problem(endpoint)) is not None:
        fail("endpoint", message)
    params = _params(raw, fail)
    sources = [
        (input_name, input_name, raw.get(input_name)),
        *((key, f"params.{key}", value) for key, value in params.items()),
        *((key, key, raw[key]) for key in PARAMETERS if key in raw),
    ]
    checked = sources if input_problem is None else sources[1:]  # one message per field
    for label, message in _body_problems(checked):
        fail(label, message)
    body = {key: value for key, _label, value in sources}
    return Case(str(name), kind, str(endpoint), body)


def _params(raw: Mapping[str, Any], fail: Callable[[str, str], None]) -> Mapping[Any, Any]:
    """The case's `params` mapping ({} when it is not one, after saying so)."""
    params = raw.get("params", {})
    if not isinstance(params, Mapping):
        fail("params", "must be an object of request fields (temperature, max_tokens, ...)")
        return {}
    for reserved in sorted(set(params) & set(RESERVED_PARAMS), key=str):
        fail(f"params.{reserved}", "is set by evaluate-gateway itself; remove it from params")
    return params


def _body_problems(sources: Iterable[tuple[str, str, Any]]) -> list[tuple[str, str]]:
    """(field label, message) for every request field that JSON cannot carry or that is out
    of range. `sources` holds (body key, label naming where the case set it, value)."""
    problems: list[tuple[str, str]] = []
    for key, label, value in sources:
        if found := _first_non_json(value, label):
            problems.append((found[0], _non_json_message(found[1])))
        elif (message := _range_problem(key, value)) is not None:
            problems.append((label, message))
    return problems


def _range_problem(key: str, value: Any) -> str | None:
    """The limits OpenAI enforces on counts and temperature, checked before paying."""
    if key in ("max_tokens", "max_completion_tokens", "n") and (
        not isinstance(value, int) or isinstance(value, bool) or value < 1
    ):
        return f"must be an integer >= 1, got {value!r}"
    if key == "temperature" and (
        not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 2
    ):
        return f"must be a number from 0 to 2, got {value!r}"
    return None


def _parse_file(path: Path) -> Any:
    text = read_text(path, "--test-file", "give a readable JSON or YAML file", CaseFileError)
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except ValueError as error:
        raise CaseFileError(f"--test-file {path} is not valid JSON: {error}") from None
    except yaml.YAMLError as error:
        raise CaseFileError(
            f"--test-file {path} is not valid YAML: {yaml_error_summary(error)}"
        ) from None


def yaml_error_summary(error: yaml.YAMLError) -> str:
    """PyYAML's problem and where, on one line (its str() draws the line with a caret)."""
    if not isinstance(error, yaml.MarkedYAMLError) or error.problem_mark is None:
        return " ".join(str(error).split())
    mark = error.problem_mark
    return f"{error.problem} at line {mark.line + 1}, column {mark.column + 1}"


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
    if len(problems) == 1:  # the usual case: one line, like every other refusal
        raise CaseFileError(f"--test-file {path}: {problems[0]}")
    if problems:
        raise CaseFileError(f"--test-file {path} has problems:\n  " + "\n  ".join(problems))
    return [case for case in cases if case is not None]
