"""The roles keep their documented interfaces honest, and Ansible really checks them.

Every public variable in defaults/main.yml is described, with the same default, in the main
entry point of meta/argument_specs.yml (and no spec describes a variable the role lacks or
gives it another default). Ansible finds an entry point's spec by the literal `tasks_from`
string (ansible/ansible#85125): `tasks_from: preflight.yml` is never validated, so no YAML
file of the project may name a task file with its extension. The MLflow release the image
pre-installs is the one pyproject.toml pins, so the image never installs MLflow twice.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = tuple(sorted(path.parent.name for path in (ROOT / "roles").glob("*/defaults")))
# Where the project's own YAML lives (not the venv, collections, lab state or caches).
YAML_DIRS = ("playbooks", "roles", "molecule", "tests", "inventory")
TASKS_FROM = re.compile(r"^\s*tasks_from:\s*[\"']?([^\"'\s#]+)", re.MULTILINE)


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def specs_of(role: str) -> dict:
    return load(ROOT / "roles" / role / "meta" / "argument_specs.yml")["argument_specs"]


def test_all_six_roles_are_covered() -> None:
    assert set(ROLES) == {
        "docker_host",
        "gateway",
        "gateway_evaluate",
        "gateway_image",
        "gateway_proxy",
        "teleport_session",
    }


@pytest.mark.parametrize("role", ROLES)
def test_the_main_entry_point_documents_exactly_the_defaults(role: str) -> None:
    defaults = set(load(ROOT / "roles" / role / "defaults" / "main.yml"))
    documented = set(specs_of(role)["main"].get("options", {}))
    assert documented == defaults, (
        f"{role} main: undocumented {sorted(defaults - documented)}, "
        f"documented but not in defaults {sorted(documented - defaults)}"
    )


@pytest.mark.parametrize("role", ROLES)
def test_every_entry_point_option_has_the_default_of_defaults_main(role: str) -> None:
    defaults = load(ROOT / "roles" / role / "defaults" / "main.yml")
    for entry_point, spec in specs_of(role).items():
        for name, option in spec.get("options", {}).items():
            assert name in defaults, f"{role} {entry_point}: {name} is not in defaults/main.yml"
            assert option.get("default") == defaults[name], (
                f"{role} {entry_point}: {name} defaults to {option.get('default')!r} in the spec"
                f" but to {defaults[name]!r} in defaults/main.yml"
            )


@pytest.mark.parametrize("role", ROLES)
def test_every_entry_point_but_main_has_a_task_file(role: str) -> None:
    for entry_point in set(specs_of(role)) - {"main"}:
        assert (ROOT / "roles" / role / "tasks" / f"{entry_point}.yml").is_file(), entry_point


def project_yaml_files() -> list[Path]:
    found = [
        path
        for directory in YAML_DIRS
        for pattern in ("*.yml", "*.yaml")
        for path in (ROOT / directory).rglob(pattern)
    ]
    return [*sorted(found), ROOT / "deploy.yml"]


def test_no_tasks_from_names_a_file_extension() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: tasks_from: {value}"
        for path in project_yaml_files()
        for value in TASKS_FROM.findall(path.read_text())
        if value.endswith((".yml", ".yaml"))
    ]
    assert offenders == [], (
        "tasks_from with an extension skips the entry point's argument spec "
        f"(ansible/ansible#85125); drop the .yml: {offenders}"
    )


def test_the_extension_check_sees_the_tasks_from_lines() -> None:
    found = [TASKS_FROM.findall(path.read_text()) for path in project_yaml_files()]
    assert {"preflight", "status", "publish", "egress", "smoke"} <= {
        value for values in found for value in values
    }


@pytest.mark.parametrize("role", ROLES)
def test_public_variables_carry_the_role_prefix(role: str) -> None:
    defaults = load(ROOT / "roles" / role / "defaults" / "main.yml")
    assert [name for name in defaults if not name.startswith(f"{role}_")] == []


def test_the_image_preinstalls_the_mlflow_that_pyproject_pins() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    gateway_extra = pyproject["project"]["optional-dependencies"]["gateway"]
    pins = [re.fullmatch(r"mlflow-skinny\[gateway\]==(\S+)", item) for item in gateway_extra]
    pinned = [match.group(1) for match in pins if match]
    image_default = load(ROOT / "roles" / "gateway_image" / "defaults" / "main.yml")
    assert pinned == [image_default["gateway_image_mlflow_version"]]
