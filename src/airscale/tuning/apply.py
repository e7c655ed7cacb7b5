"""Fitting the plan to a spec: which profile, and what wins over the plan.

Order of precedence, lowest first: what airscale derives (ports, secrets, paths) < the plan
< the spec's explicit settings (`airflow_config`, `tuning.postgres`, an explicitly set
`database.max_connections`). The profile's scheduler count and queue names come from the spec,
so the plan sizes the cluster the spec actually describes.
"""

from __future__ import annotations

from typing import Any

from airscale.errors import AirscaleError
from airscale.spec.models import Spec
from airscale.tuning.planner import Plan, plan
from airscale.spec.workload import WorkloadProfile, load_profile


def profile_for(spec: Spec) -> WorkloadProfile:
    """The spec's workload profile, adjusted to its schedulers and queues."""
    t = spec.tuning
    if t.workload is not None:
        base = t.workload
    elif t.workload_file is not None:
        base = load_profile(spec.resolve(t.workload_file))
    else:
        # No profile: size it from the queues, so the plan keeps the capacity they describe.
        slots = sum(q.max_workers * q.concurrency for q in spec.queues.values())
        base = WorkloadProfile(peak_concurrent_tasks=slots, tasks_per_day=min(10_000, slots * 2000))
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
    key = (spec.model_dump_json(include={"tuning", "queues", "schedulers"}), str(spec.base_dir))
    if key not in _PLANS:
        if len(_PLANS) >= 16:  # a long-lived process (bench) sees a few specs, not many
            _PLANS.clear()
        _PLANS[key] = plan(profile_for(spec))
    return _PLANS[key]


_PLANS: dict[tuple[str, str], Plan] = {}


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
