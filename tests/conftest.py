"""Shared test helpers: specs written to temporary folders the embedded PostgreSQL can reach."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


def airscale(*args: str, timeout: float = 600, check: bool = False) -> subprocess.CompletedProcess:
    """Run the real `airscale` CLI as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", "airscale.cli", *args],
        capture_output=True, text=True, timeout=timeout, cwd=REPO,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"airscale {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def reachable_tmpdir(prefix: str) -> Path:
    """A temporary folder under /tmp that the `postgres` user can enter (pytest's tmp_path is 0700)."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(d, 0o755)
    return d


def write_spec(folder: Path, data: dict, name: str = "airscale.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def spec_dir() -> Path:
    d = reachable_tmpdir("airscale-unit-")
    (d / "dags").mkdir()
    yield d
    subprocess.run(["rm", "-rf", str(d)], check=False)
