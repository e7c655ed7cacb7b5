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


def airscale_in_process(*args: str) -> subprocess.CompletedProcess:
    """`airscale ARGS` through the same entry point as the real CLI (`airscale.cli.main`), in
    this process: for the many refusals of bad specs, where starting a Python per case cost most
    of the unit suite's time. Anything that escapes `main` is written out as a traceback, so a
    test that asserts "no traceback" still catches it; commands that start or delete things
    keep using `airscale()`."""
    import contextlib
    import io
    import traceback

    from airscale.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    code = 0
    argv = sys.argv
    sys.argv = ["airscale", *args]
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                main()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:  # noqa: BLE001 - shown as the real CLI would show it
                stderr.write(traceback.format_exc())
                code = 1
    finally:
        sys.argv = argv
    return subprocess.CompletedProcess(["airscale", *args], code, stdout.getvalue(), stderr.getvalue())


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
