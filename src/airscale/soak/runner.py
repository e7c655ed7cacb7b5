"""Running a soak: the load, the prober, the memory sampler and the fault injector on a live
cluster for a while, then the drain, the reads from the metadata database and the verdict.

`soak` attaches to a running cluster (the short soak of `make test` uses the shared default
cluster); `run_soak` brings a cluster of its own up first (`airscale soak`, `make soak`), with
the DAG files of the profile, and down afterwards unless told to keep it.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

from airscale.runtime.airflow_config import api_url
from airscale.runtime.cluster import Cluster
from airscale.soak import faults as fault_injection
from airscale.soak import memory, schedule, verdict
from airscale.soak.probe import Prober
from airscale.soak.workload import Load, Trigger, profile_load

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass
class SoakResult:
    """Everything a soak recorded; the verdict and the report are derived from it."""

    started: float
    warmup_end: float
    load_end: float
    ended: float
    seed: int
    planned: list[schedule.PlannedFault]
    faults: list[verdict.FaultObs]
    skipped: list[tuple[schedule.PlannedFault, str]]
    probes: list[verdict.ProbeObs]
    triggered: list[str]
    trigger_failures: list[tuple[str, str, str]]
    run_states: dict[str, str]
    latest: list[verdict.TryObs]
    earlier: list[verdict.TryObs]
    queue_waits: list[tuple[float, float]]  # (start epoch, seconds queued) of each latest try
    samples: list[verdict.MemorySample]
    restarts: dict[str, int] = field(default_factory=dict)
    info: dict = field(default_factory=dict)  # what was run: profile, load, spec figures

    def judge(self, **kw) -> verdict.Verdict:
        return verdict.judge(self.probes, self.faults, self.triggered, self.run_states, self.latest, self.earlier,
                             self.samples, self.warmup_end, self.ended, self.warmup_end - self.started, **kw)

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str)


def _read(fn, attempts: int = 30, delay: float = 2.0):
    for i in range(attempts):
        try:
            return fn()
        except Exception:
            if i == attempts - 1:
                raise
            time.sleep(delay)


def _tries(cluster: Cluster, table: str, tag: str) -> list[verdict.TryObs]:
    rows = cluster.query(
        f"SELECT run_id, task_id, map_index, try_number, state, EXTRACT(EPOCH FROM start_date), "
        f"EXTRACT(EPOCH FROM end_date) FROM {table} WHERE run_id LIKE %s", tag + "-%")
    return [verdict.TryObs(r, t, m, n, s, float(a) if a is not None else None, float(b) if b is not None else None)
            for r, t, m, n, s, a, b in rows]


def _login(base_url: str, password: str) -> str:
    """One login for the soak's clients, before the clock starts."""
    import httpx

    r = _read(lambda: httpx.post(f"{base_url}/auth/token", json={"username": "admin", "password": password},
                                 timeout=60).raise_for_status(), attempts=5)
    return r.json()["access_token"]


def _unfinished(cluster: Cluster, tag: str) -> int:
    return cluster.query("SELECT count(*) FROM dag_run WHERE run_id LIKE %s AND state NOT IN ('success', 'failed')",
                         tag + "-%")[0][0]


def soak(cluster: Cluster, load: Load, duration_s: float, warmup_s: float, planned: list[schedule.PlannedFault],
         seed: int, drain_s: float = 600.0, probe_interval: float = 1.0, memory_interval: float = 30.0,
         progress: Progress = _quiet) -> SoakResult:
    """Soak a running cluster: trigger `load` for `duration_s`, inject `planned` faults, probe,
    sample memory; then wait up to `drain_s` for every run to end and read the outcome."""
    from airscale.drills import observe

    spec = cluster.spec
    password = cluster.secrets().admin_password
    tag = f"soak-{uuid.uuid4().hex[:6]}"
    restarts_before = observe.restart_counts(cluster)
    token = _login(api_url(spec), password)
    t0 = time.time()
    prober = Prober(api_url(spec), "admin", password, interval=probe_interval, token=token).start()
    sampler = memory.Sampler(cluster, memory_interval).start()
    trigger = Trigger(api_url(spec), "admin", password, load, tag, token=token).start()
    injector = fault_injection.Injector(cluster, planned, t0, progress).start()
    progress(f"soaking for {duration_s / 60:.1f} min: {load.runs_per_s * load.tasks_per_run:.2f} tasks/s over "
             f"{len(set(load.dag_ids))} DAG(s)" + (f" after a burst of {load.burst} runs" if load.burst else "")
             + f", {len(planned)} fault(s) planned (seed {seed})")
    try:
        while time.time() < t0 + duration_s:
            time.sleep(min(30.0, max(0.0, t0 + duration_s - time.time())))
            ok = sum(1 for p in prober.snapshot() if p.ok)
            progress(f"{(time.time() - t0) / 60:.1f} min: {len(trigger.run_ids)} runs triggered, "
                     f"{ok}/{len(prober.snapshot())} probes answered, {len(injector.faults)} fault(s) recovered")
    finally:
        trigger.stop()
    load_end = time.time()
    progress("load stopped; waiting for the runs to end and the last faults to heal")
    faults = injector.stop(wait_recovery_s=drain_s)
    deadline = time.time() + drain_s
    while time.time() < deadline:
        try:
            if _unfinished(cluster, tag) == 0:
                break
        except Exception:  # noqa: BLE001, S110 - database failing over: ask again
            pass
        time.sleep(2.0)
    ended = time.time()
    probes = prober.stop()
    samples = sampler.stop()
    runs = dict(_read(lambda: cluster.query("SELECT run_id, state FROM dag_run WHERE run_id LIKE %s", tag + "-%")))
    latest = _read(lambda: _tries(cluster, "task_instance", tag))
    earlier = _read(lambda: _tries(cluster, "task_instance_history", tag))
    waits = _read(lambda: cluster.query(
        "SELECT EXTRACT(EPOCH FROM start_date), EXTRACT(EPOCH FROM (start_date - queued_dttm)) FROM task_instance "
        "WHERE run_id LIKE %s AND start_date IS NOT NULL AND queued_dttm IS NOT NULL", tag + "-%"))
    after = observe.restart_counts(cluster)
    return SoakResult(
        started=t0, warmup_end=t0 + warmup_s, load_end=load_end, ended=ended, seed=seed, planned=planned,
        faults=faults, skipped=injector.skipped,
        probes=[verdict.ProbeObs(p.at, p.endpoint, p.latency_s, p.ok) for p in probes],
        triggered=[r for _, r in trigger.run_ids], trigger_failures=trigger.failed, run_states=runs,
        latest=latest, earlier=earlier, queue_waits=[(float(a), float(b)) for a, b in waits],
        samples=samples, restarts={n: c - restarts_before.get(n, 0) for n, c in after.items()
                                   if c > restarts_before.get(n, 0)},
        info={"cluster": spec.cluster.name, "api_servers": spec.api_server.count,
              "schedulers": spec.schedulers.count, "tag": tag,
              "tasks_per_s": load.runs_per_s * load.tasks_per_run},
    )


# -- a cluster of its own (`airscale soak`) ----------------------------------------------------------
PROFILES = ("default", "ha")
# One run per task slot: each run's extract is queued at once, so every slot runs a task in the
# first seconds. Four per slot (320 tasks for 16 slots) kept the 2-core host saturated for two
# minutes, and 10 REST probes of the default hour took over 2 s then, before any fault.
BURST_RUNS_PER_SLOT = 1


@dataclass(frozen=True)
class SoakConfig:
    minutes: float = 60.0
    seed: int = 1
    load: float = 4.0  # compression of the 50k/day profile: 4 = 2.3 tasks/s
    profile: str = "default"  # default | ha
    dags: int = 1000
    root: Path = Path("/tmp/airscale-soak")
    base_port: int = 31000
    warmup_minutes: float | None = None  # default: the load's first round (warmup_s)
    mean_gap_s: float | None = None  # default: every kind about twice in the soak
    keep: bool = False

    @property
    def duration_s(self) -> float:
        return self.minutes * 60.0

    @cached_property
    def profile_load(self):
        """(the workload profile, the soak's load) for `load` and `dags`."""
        return profile_load(self.load, self.dags)

    @property
    def warmup_s(self) -> float:
        """Until the load has gone round once: every DAG triggered, its serialized DAG, plans
        and metric series then in every cache (memory filling them is not growth), plus a
        minute for the last runs to end. At least 10 % of the soak (1 min), at most a third."""
        if self.warmup_minutes is not None:
            return self.warmup_minutes * 60.0
        _, load = self.profile_load
        round_s = len(load.dag_ids) / load.runs_per_s + 60.0
        return min(self.duration_s / 3, max(60.0, 0.1 * self.duration_s, round_s))

    @property
    def quiet_s(self) -> float:
        """No fault in the last stretch: the last one heals before the load stops."""
        return min(300.0, 0.1 * self.duration_s)

    def plan(self) -> list[schedule.PlannedFault]:
        kinds = schedule.kinds_for(self.profile)
        window = self.duration_s - self.warmup_s - self.quiet_s
        gap = self.mean_gap_s or max(30.0, window / (2 * len(kinds)))
        return schedule.plan(self.seed, self.duration_s, self.warmup_s, self.quiet_s, gap, min(20.0, gap / 2), kinds)


def soak_spec(cfg: SoakConfig) -> dict:
    """The soak cluster's spec (as YAML data): the product's defaults for the profile, with the
    workload profile's tuning plan (1,000 DAG files, 50,000 tasks a day)."""
    from airscale.bench.specs import BENCH_PROFILE

    data: dict = {
        "cluster": {"name": f"soak-{cfg.profile}", "base_port": cfg.base_port,
                    "data_dir": str(cfg.root / "data")},
        "dags_folder": str(cfg.root / "dags"),
        "schedulers": {"count": 2},
        # Two workers of 8 slots, not autoscaled: a killed worker is one of a known two.
        "queues": {"default": {"min_workers": 2, "max_workers": 2, "concurrency": 8}},
        "autoscaling": {"enabled": False},
        "workers": {"drain_timeout": 60},
        "tuning": {"enabled": True, "workload": BENCH_PROFILE.model_copy(
            update={"dags": cfg.dags, "peak_concurrent_tasks": 16}).model_dump()},
    }
    if cfg.profile == "ha":
        data["ha"] = {"database": {"enabled": True}, "broker": {"enabled": True}}
    return data


def run_soak(cfg: SoakConfig, progress: Progress = _quiet) -> SoakResult:
    """Bring the soak cluster up, soak it, and bring it down (unless `keep`)."""
    import yaml

    from airscale.assembly import open_cluster
    from airscale.errors import AirscaleError
    from airscale.soak.workload import write_dag_files
    from airscale.spec import load_spec

    if cfg.profile not in PROFILES:
        raise AirscaleError(f"--profile {cfg.profile!r} is not a soak profile", f"give one of: {', '.join(PROFILES)}")
    cfg.root.mkdir(parents=True, exist_ok=True)
    p, load = cfg.profile_load
    n = write_dag_files(cfg.root / "dags", p, cfg.dags)
    spec_file = cfg.root / "airscale.yaml"
    spec_file.write_text(yaml.safe_dump(soak_spec(cfg), sort_keys=False))
    cluster = open_cluster(load_spec(spec_file))
    # Warm-up starts with a burst of one run per task slot: every slot runs a task early.
    slots = sum(q.max_workers * q.concurrency for q in cluster.spec.queues.values())
    load = dataclasses.replace(load, burst=BURST_RUNS_PER_SLOT * slots)
    progress(f"bringing up {cluster.spec.cluster.name} with {n} DAG files (spec {spec_file})")
    try:
        cluster.up(progress)
        _wait_for_dags(cluster, load.dag_ids, timeout=2400.0, progress=progress)
        return soak(cluster, load, cfg.duration_s, cfg.warmup_s, cfg.plan(), cfg.seed, progress=progress)
    finally:
        if not cfg.keep:
            progress("bringing the soak cluster down")
            cluster.down(purge=True)


def _wait_for_dags(cluster: Cluster, dag_ids: tuple[str, ...], timeout: float, progress: Progress) -> None:
    """Until every DAG of the load is in the database (parsed once)."""
    deadline = time.time() + timeout
    want = set(dag_ids)
    while True:
        have = {d for (d,) in cluster.query("SELECT dag_id FROM dag WHERE dag_id = ANY(%s)", list(want))}
        progress(f"{len(have)}/{len(want)} DAGs of the load parsed")
        if have == want:
            return
        if time.time() > deadline:
            from airscale.errors import AirscaleError

            raise AirscaleError(f"only {len(have)} of {len(want)} DAGs parsed after {timeout:.0f}s",
                                "look at airscale logs dag-processor")
        time.sleep(15.0)
