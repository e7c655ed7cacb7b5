"""Fitting the plan to a spec: which profile, and what wins over the plan.

Order of precedence, lowest first: what airscale derives (ports, secrets, paths) < the plan
< the spec's explicit settings (`airflow_config`, `tuning.postgres`, an explicitly set
`database.max_connections`). The profile's scheduler count and queue names come from the spec,
so the plan sizes the cluster the spec actually describes.

Without a workload profile the plan is sized from the DAG folder, and every file that reads the
plan (airflow.cfg, PostgreSQL's and PgBouncer's configuration, the default pool) asks for it.
Within `counted_once`, which the CLI holds around each command, the folder is walked once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from airscale.errors import AirscaleError
from airscale.spec import dagfiles
from airscale.spec.models import Spec
from airscale.spec.workload import WorkloadProfile, load_profile
from airscale.tuning.planner import Plan, plan

# A folder's DAG file count, rounded up to one of these: the plan (and so airflow.cfg, which
# every Airflow process reads) changes only when the folder crosses one, not at every new file.
DAG_COUNT_STEPS = (50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000)


def dag_count_step(files: int) -> int:
    """The DAG-file count a plan is made for: the first step at or above `files` (pure)."""
    return next((s for s in DAG_COUNT_STEPS if files <= s), DAG_COUNT_STEPS[-1])


def count_dag_files(folder: Path, limit: int = DAG_COUNT_STEPS[-1]) -> int:
    """DAG files under the folder by airscale's rule (airscale.spec.dagfiles: Python and zip
    files, hidden ones and __pycache__ skipped; .airflowignore not read); stops counting at
    `limit`. An unreadable or missing folder counts 0 (`up` says what is wrong with it)."""
    n = 0
    for root, dirs, files in os.walk(folder, onerror=lambda e: None):
        dirs[:] = [d for d in dirs if not dagfiles.skipped(d)]
        n += sum(1 for f in files if dagfiles.dag_file_name(f))
        if n >= limit:
            return limit
    return n


# The DAG folders counted so far within `counted_once` (folder -> its step); None outside it.
_COUNTED: dict[Path, int] | None = None


@contextmanager
def counted_once() -> Iterator[None]:
    """Within the block each DAG folder is counted once: the CLI holds one around every command
    (airscale.cli), so `up`, which reads the plan for each file it writes, walks the folder once.
    Outside it (a library caller, a test) each plan counts again and sees the folder as it is
    then. An inner block shares the outer one's counts."""
    global _COUNTED
    outer = _COUNTED
    if outer is None:
        _COUNTED = {}
    try:
        yield
    finally:
        _COUNTED = outer


def planned_dag_files(folder: Path) -> int:
    """The DAG-file count a plan without a workload profile is made for: the folder's, rounded up
    to a step (`dag_count_step`); counted once per folder within `counted_once`."""
    counted = _COUNTED
    if counted is not None and folder in counted:
        return counted[folder]
    files = dag_count_step(count_dag_files(folder))
    if counted is not None:
        counted[folder] = files
    return files


def profile_for(spec: Spec, dag_files: int | None = None) -> WorkloadProfile:
    """The spec's workload profile, adjusted to its schedulers and queues. Without a profile,
    sized from the queues and the DAG folder (`dag_files` counted there when not given)."""
    t = spec.tuning
    if t.workload is not None:
        base = t.workload
    elif t.workload_file is not None:
        base = load_profile(spec.resolve(t.workload_file))
    else:
        # No profile: size it from the queues, so the plan keeps the capacity they describe,
        # and from the DAG files the folder holds (how long the dag-processor's pass is).
        slots = sum(q.max_workers * q.concurrency for q in spec.queues.values())
        if dag_files is None:
            dag_files = planned_dag_files(spec.dags_path)
        base = WorkloadProfile(peak_concurrent_tasks=slots, tasks_per_day=min(10_000, slots * 2000), dags=dag_files)
    explicit_queues = "queues" in base.model_fields_set
    if explicit_queues and set(base.queues) != set(spec.queues):
        raise AirscaleError(
            f"tuning.workload.queues names {sorted(base.queues)}, the spec's queues are {sorted(spec.queues)}",
            "give the workload profile a share for each queue of the spec, or leave its queues out",
        )
    if explicit_queues:
        shares = base.queues
    else:
        # Shares in proportion to the capacity the spec gives each queue.
        cap = {n: q.max_workers * q.concurrency for n, q in spec.queues.items()}
        shares = {n: c / sum(cap.values()) for n, c in cap.items()}
    data = base.model_dump()
    data.update(schedulers=spec.schedulers.count, queues=shares)
    return WorkloadProfile.model_validate(data)


def plan_for(spec: Spec) -> Plan | None:
    """The spec's plan, derived once: airflow.cfg, PostgreSQL, PgBouncer and the status views
    all read it, and a spec copied with other values gets its own (the key is what it reads)."""
    if not spec.tuning.enabled:
        return None
    t = spec.tuning
    files = None
    if t.workload is None and t.workload_file is None:
        files = planned_dag_files(spec.dags_path)
    key = (spec.model_dump_json(include={"tuning", "queues", "schedulers"}), str(spec.base_dir), files)
    if key not in _PLANS:
        if len(_PLANS) >= 16:  # a long-lived process (bench) sees a few specs, not many
            _PLANS.clear()
        _PLANS[key] = plan(profile_for(spec, files))
    return _PLANS[key]


_PLANS: dict[tuple[str, str, int | None], Plan] = {}


def planned_airflow_settings(spec: Spec) -> dict[str, dict[str, Any]]:
    """The plan's Airflow settings (empty when tuning is off); callers apply the spec's
    `airflow_config` after these so it wins."""
    p = plan_for(spec)
    if p is None:
        return {}
    settings = p.airflow_settings()
    # Workers take their concurrency from the spec's queues (`--concurrency` on the command
    # line, which beats airflow.cfg); leave it out so the file does not claim otherwise.
    settings.get("celery", {}).pop("worker_concurrency", None)
    return {k: v for k, v in settings.items() if v}


def planned_postgres_settings(spec: Spec) -> dict[str, Any]:
    """PostgreSQL settings for the embedded database: the plan's, then the spec's."""
    out: dict[str, Any] = {"max_connections": spec.database.max_connections}
    p = plan_for(spec)
    if p is not None:
        out.update(p.postgres_settings())
        if "max_connections" in spec.database.model_fields_set:
            out["max_connections"] = spec.database.max_connections
    out.update(spec.tuning.postgres)
    return out
