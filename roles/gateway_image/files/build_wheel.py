"""Build the tools package wheel reproducibly, for the gateway image's build context.

The same sources always give the same wheel bytes (fixed SOURCE_DATE_EPOCH, build directories
outside the source tree), so the image tag, a hash of the build context, changes only when the
code does. The cached wheel is replaced only when its bytes differ. Prints one JSON line:
{"wheel": "<path>", "changed": true|false}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# 1980-01-01, the earliest date a zip entry can carry.
REPRODUCIBLE_EPOCH = "315532800"


def build_wheel(package_dir: Path, work_dir: Path) -> Path:
    """Build into work_dir; setuptools' build/ and egg-info go there too, never into the source."""
    extra_config = work_dir / "setup.cfg"
    extra_config.write_text(
        f"[build]\nbuild_base = {work_dir / 'build'}\n[egg_info]\negg_base = {work_dir}\n"
    )
    environment = {
        **os.environ,
        "SOURCE_DATE_EPOCH": REPRODUCIBLE_EPOCH,
        "DIST_EXTRA_CONFIG": str(extra_config),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet"]
    command += ["--wheel-dir", str(work_dir / "dist"), str(package_dir)]
    subprocess.run(command, check=True, env=environment, stdout=sys.stderr)  # noqa: S603
    wheels = sorted((work_dir / "dist").glob("*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"expected one wheel from {package_dir}, got {wheels}")
    return wheels[0]


def install_if_different(wheel: Path, out_dir: Path) -> tuple[Path, bool]:
    """Put the wheel in out_dir as its only wheel; report whether anything changed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / wheel.name
    others = [old for old in out_dir.glob("*.whl") if old != target]
    if target.exists() and target.read_bytes() == wheel.read_bytes() and not others:
        return target, False
    for old in others:
        old.unlink()
    shutil.copyfile(wheel, target)
    return target, True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package-dir", type=Path, required=True, help="dir with pyproject.toml")
    parser.add_argument("--out-dir", type=Path, required=True, help="where the wheel is kept")
    args = parser.parse_args()
    if not (args.package_dir / "pyproject.toml").is_file():
        parser.error(f"--package-dir {args.package_dir} has no pyproject.toml")
    with tempfile.TemporaryDirectory(prefix="gateway-wheel-") as work_dir:
        wheel, changed = install_if_different(
            build_wheel(args.package_dir, Path(work_dir)), args.out_dir
        )
    print(json.dumps({"wheel": str(wheel), "changed": changed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
