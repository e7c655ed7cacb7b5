"""A live cluster with the drill workload installed, for integration tests that inject faults
(`airscale drill`): made under /tmp, brought up with the real CLI, purged afterwards."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from airscale.drills import workload
from tests.conftest import airscale, reachable_tmpdir, write_spec


@contextmanager
def drill_cluster(name: str, base_port: int, **spec: object) -> Iterator[Path]:
    """Yield the spec file of cluster `name` at `base_port`; `spec` adds or replaces top-level
    sections (monitoring is off: the drills watch Airflow, and the 2 cores are spared)."""
    d = reachable_tmpdir(f"airscale-{name}-")
    dags = d / "dags"
    dags.mkdir()
    workload.install(dags)
    path = write_spec(d, {
        "cluster": {"name": name, "data_dir": str(d / "data"), "base_port": base_port},
        "monitoring": {"enabled": False},
        "dags_folder": str(dags),
        **spec,
    })
    try:
        proc = airscale("up", "-s", str(path), timeout=400)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        yield path
    finally:
        airscale("down", "--purge", "-s", str(path), timeout=300)
        subprocess.run(["rm", "-rf", str(d)], check=False)
