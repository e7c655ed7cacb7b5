"""The layering contract (pyproject.toml, [tool.importlinter]) holds, and it would catch a
lower layer that imports a higher one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(src: Path) -> subprocess.CompletedProcess:
    """`lint-imports` with the project's contract, on the package found under `src`."""
    env = dict(os.environ, PYTHONPATH=str(src))
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(REPO / "pyproject.toml"), "--no-cache"],
        capture_output=True, text=True, env=env, cwd=src, timeout=120,
    )


def test_the_package_keeps_its_layers() -> None:
    proc = lint_imports(REPO / "src")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 kept, 0 broken" in proc.stdout


@pytest.mark.parametrize("module, upward", [
    pytest.param("runtime/components.py", "airscale.observe.stack", id="runtime-imports-a-capability"),
    pytest.param("spec/models.py", "airscale.tuning.planner", id="spec-imports-tuning"),
    pytest.param("observe/rules.py", "airscale.deploy.render", id="capability-imports-deploy"),
    pytest.param("ha/database.py", "airscale.dbcare.clean", id="capability-imports-a-sibling"),
    pytest.param("runtime/cluster.py", "airscale.assembly", id="runtime-imports-the-assembly"),
])
def test_an_upward_import_breaks_the_contract(tmp_path: Path, module: str, upward: str) -> None:
    shutil.copytree(REPO / "src" / "airscale", tmp_path / "airscale",
                    ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "airscale" / module
    target.write_text(target.read_text() + f"\nimport {upward}  # noqa\n")
    proc = lint_imports(tmp_path)
    assert proc.returncode != 0, proc.stdout
    assert "BROKEN" in proc.stdout
    assert upward in proc.stdout, proc.stdout
