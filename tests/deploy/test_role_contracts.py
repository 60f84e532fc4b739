"""The gateway roles keep their documented interfaces honest.

Every public variable in defaults/main.yml is described in meta/argument_specs.yml (and no
spec describes a variable the role lacks), and the MLflow release the image pre-installs is
the one pyproject.toml pins, so the image never installs MLflow twice or disagrees.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = ("gateway_image", "gateway", "gateway_proxy")


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


@pytest.mark.parametrize("role", ROLES)
def test_every_entry_point_documents_exactly_the_defaults(role: str) -> None:
    defaults = set(load(ROOT / "roles" / role / "defaults" / "main.yml"))
    specs = load(ROOT / "roles" / role / "meta" / "argument_specs.yml")["argument_specs"]
    for entry_point, spec in specs.items():
        documented = set(spec.get("options", {}))
        assert documented == defaults, (
            f"{role} entry point {entry_point}: undocumented {sorted(defaults - documented)}, "
            f"documented but not in defaults {sorted(documented - defaults)}"
        )


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
