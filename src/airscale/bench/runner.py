"""Running the benchmark: bring up a stock and a tuned cluster, run each scenario on both,
alternating which goes first, and collect figures (all the I/O of `airscale bench`).

Both clusters are identical but for the tuning plan: same DAG files, one scheduler, one Celery
worker with the same concurrency, same machine, same run. The stock cluster keeps Airflow's
defaults except what airscale needs to run at all (ports, secrets, executor, paths).
Alternating the order in every round spreads slow moments (other clusters on the machine)
over both variants; the report gives ratios per round as well as medians.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from airscale.bench import metrics
from airscale.bench.scenarios import WARMUP, Scenario, dag_file
from airscale.bench.stock import stock_overrides
from airscale.errors import AirscaleError
from airscale.spec import Spec
from airscale.tuning.workload import WorkloadProfile

VARIANTS = ("stock", "tuned")

# The bench's own workload, as an operator would describe it: short trivial tasks on one
# 2-core worker of 8 slots, a latency goal of a quarter second.
BENCH_PROFILE = WorkloadProfile(
    dags=2, tasks_per_day=50_000, peak_concurrent_tasks=8, typical_task_seconds=1.0,
    burstiness=10, latency_goal_seconds=0.25, parse_seconds_per_dag=0.5,
)


@dataclass
class BenchConfig:
    scenarios: tuple[Scenario, ...]
    rounds: int
    root: Path  # data dirs and DAG files live under it
    ports: dict[str, int] = field(default_factory=lambda: {"stock": 29800, "tuned": 29900})
    concurrency: int = 8
    idle_seconds: float = 20.0  # quiet period over which scheduler CPU is measured
    run_timeout: float = 900.0
    profile: WorkloadProfile = field(default_factory=lambda: BENCH_PROFILE)


def bench_spec(cfg: BenchConfig, variant: str) -> Spec:
    data: dict = {
        "cluster": {"name": f"bench-{variant}", "data_dir": str(cfg.root / variant),
                    "base_port": cfg.ports[variant]},
        "schedulers": {"count": 1},
        "queues": {"default": {"min_workers": 1, "max_workers": 1, "concurrency": cfg.concurrency}},
        "dags_folder": str(cfg.root / "dags"),
    }
    # Same components on both: no autoscaler (same number of workers), no monitoring stack
    # (its exporters would compete for the CPU being measured).
    if "autoscaling" in Spec.model_fields:
        data["autoscaling"] = {"enabled": False}
    if "monitoring" in Spec.model_fields:
        data["monitoring"] = {"enabled": False}
    data["tuning"] = (
        {"enabled": True, "workload": cfg.profile.model_dump()} if variant == "tuned" else {"enabled": False}
    )
    spec = Spec.model_validate(data).model_copy(update={"base_dir": cfg.root})
    if variant == "stock":
        overrides, _ = stock_overrides(_derived(spec))
        spec = spec.model_copy(update={"airflow_config": overrides})
    return spec


def _derived(spec: Spec) -> dict[str, dict]:
    """The settings airscale would write for `spec` (secrets are placeholders: only keys matter)."""
    from airscale.runtime.airflow_config import merged_settings
    from airscale.runtime.layout import Layout
    from airscale.runtime.secrets import Secrets

    return merged_settings(spec, Layout(spec.data_path), Secrets.generate())


def stock_differences(cfg: BenchConfig) -> tuple[dict[str, dict], list[str]]:
    """What the stock cluster sets back to Airflow's defaults, and what it could not."""
    spec = Spec.model_validate({"cluster": {"data_dir": str(cfg.root / "stock")},
                                **({"monitoring": {"enabled": False}} if "monitoring" in Spec.model_fields else {})})
    return stock_overrides(_derived(spec))


def write_dags(cfg: BenchConfig) -> None:
    folder = cfg.root / "dags"
    folder.mkdir(parents=True, exist_ok=True)
    for s in (WARMUP, *cfg.scenarios):
        (folder / f"{s.dag_id}.py").write_text(dag_file(s))


def prepare_root(root: Path) -> None:
    """PostgreSQL runs as `postgres` when we are root: every folder on the way must be enterable."""
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)


# --- CPU accounting ------------------------------------------------------------------------------
def tree_cpu(pids: list[int]) -> float:
    """CPU seconds of processes and all their descendants, including reaped children
    (task processes are forked and reaped by the worker's pool processes)."""
    total = 0.0
    seen: set[int] = set()
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for p in procs:
            if p.pid in seen:
                continue
            seen.add(p.pid)
            try:
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.Error:
                pass
    return total


def _retry(call: Callable, attempts: int = 5, delay: float = 3.0):
    """REST calls to a loaded api-server may time out; try again a few times."""
    import httpx

    for i in range(attempts):
        try:
            return call()
        except (httpx.TimeoutException, httpx.TransportError):
            if i == attempts - 1:
                raise
            time.sleep(delay)


class Target:
    """One running bench cluster."""

    def __init__(self, variant: str, spec: Spec):
        from airscale.runtime.cluster import Cluster

        self.variant = variant
        self.spec = spec
        self.cluster = Cluster(spec)
        self.client = None

    def up(self, progress: Callable[[str], None]) -> None:
        from airscale.runtime.airflow_config import api_url
        from airscale.workload.client import AirflowClient

        self.cluster.up(lambda m: progress(f"{self.variant}: {m}"))
        # A generous timeout: the machine may be loaded by other clusters.
        self.client = AirflowClient(api_url(self.spec), "admin", self.cluster.secrets().admin_password,
                                    timeout=60)

    def down(self) -> None:
        if self.client is not None:
            self.client.close()
        self.cluster.down(purge=True)

    def pids(self, kinds: set[str] | None = None) -> list[int]:
        infos = self.cluster.supervisor.infos()
        out = []
        for c in self.cluster.components():
            if kinds is None or c.kind in kinds:
                pid = infos.get(c.name, {}).get("pid")
                if pid:
                    out.append(pid)
        return out

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far per component kind (scheduler, worker, api-server, ...)."""
        infos = self.cluster.supervisor.infos()
        by_kind: dict[str, list[int]] = {}
        for c in self.cluster.components():
            pid = infos.get(c.name, {}).get("pid")
            if pid:
                by_kind.setdefault(c.kind, []).append(pid)
        return {k: tree_cpu(pids) for k, pids in by_kind.items()}

    def task_rows(self, dag_id: str, run_id: str) -> list[metrics.TaskRow]:
        from airscale.runtime.health import db_connect

        conn = db_connect(self.spec, self.cluster.secrets())
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT task_id, state, queued_dttm, start_date, end_date FROM task_instance "
                    "WHERE dag_id = %s AND run_id = %s", (dag_id, run_id))
                return [metrics.TaskRow(*r) for r in cur.fetchall()]
        finally:
            conn.close()

    def run(self, s: Scenario, rnd: int, timeout: float,
            on_poll: Callable[[int, int], None]) -> metrics.RunFigures:
        c = self.client
        _retry(lambda: c.wait_for_dag(s.dag_id, timeout=300))
        _retry(lambda: c.unpause(s.dag_id))
        cpu0 = self.cpu()
        # Our own run id: a trigger retried after a timeout then gets 409, not a second run.
        run_id = f"bench-{self.variant}-{s.name}-{rnd}-{uuid.uuid4().hex[:6]}"
        _retry(lambda: self._trigger(s.dag_id, run_id))
        state = self._wait(s, run_id, timeout, on_poll)
        cpu1 = self.cpu()
        by_kind = {k: cpu1[k] - cpu0.get(k, 0.0) for k in cpu1}
        rows = self.task_rows(s.dag_id, run_id)
        fig = metrics.figures(s.name, s.kind, self.variant, rnd, rows,
                              scheduler_cpu_s=by_kind.get("scheduler", 0.0),
                              cluster_cpu_s=sum(by_kind.values()))
        fig.cpu_by_kind = by_kind
        fig.run_state = state
        return fig

    def _trigger(self, dag_id: str, run_id: str) -> None:
        r = self.client._http.post(f"/api/v2/dags/{dag_id}/dagRuns",
                                   json={"dag_run_id": run_id, "logical_date": None, "conf": {}})
        if r.status_code >= 400 and r.status_code != 409:
            raise AirscaleError(f"triggering {dag_id} failed: {r.status_code} {r.text[:200]}")

    def _wait(self, s: Scenario, run_id: str, timeout: float, on_poll: Callable[[int, int], None]) -> str:
        """Follow the run in the database rather than the REST API: lighter on the cluster
        being measured, and an api-server slowed by a loaded machine cannot fail the bench."""
        from airscale.runtime.health import db_connect

        conn = db_connect(self.spec, self.cluster.secrets())
        conn.autocommit = True
        deadline = time.monotonic() + timeout
        try:
            while True:
                with conn.cursor() as cur:
                    cur.execute("SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", (s.dag_id, run_id))
                    row = cur.fetchone()
                    cur.execute("SELECT count(*) FROM task_instance WHERE dag_id = %s AND run_id = %s "
                                "AND state IN ('success', 'failed', 'upstream_failed')", (s.dag_id, run_id))
                    done = cur.fetchone()[0]
                on_poll(done, s.tasks)
                state = row[0] if row else None
                if state in ("success", "failed"):
                    return state
                if time.monotonic() > deadline:
                    raise AirscaleError(
                        f"bench run {run_id} of {s.dag_id} on {self.variant} not finished after {timeout:.0f}s",
                        f"look at the cluster's logs under {self.cluster.layout.logs}")
                time.sleep(0.5)
        finally:
            conn.close()

    def idle_scheduler_share(self, seconds: float) -> float:
        """Share of one core the schedulers use while nothing runs."""
        a = tree_cpu(self.pids({"scheduler"}))
        t0 = time.monotonic()
        time.sleep(seconds)
        b = tree_cpu(self.pids({"scheduler"}))
        return (b - a) / (time.monotonic() - t0)


@dataclass
class BenchResult:
    runs: list[metrics.RunFigures]
    idle_share: dict[str, float]
    plan_settings: dict[str, dict]
    config: BenchConfig
    started: float
    finished: float
    stock_restored: dict[str, dict] = field(default_factory=dict)
    stock_left: list[str] = field(default_factory=list)


def run_bench(cfg: BenchConfig, progress: Callable[[str], None],
              on_poll: Callable[[str, int, int], None] | None = None) -> BenchResult:
    from airscale.tuning.apply import planned_airflow_settings

    started = time.time()
    prepare_root(cfg.root)
    write_dags(cfg)
    targets = {v: Target(v, bench_spec(cfg, v)) for v in VARIANTS}
    runs: list[metrics.RunFigures] = []
    idle: dict[str, float] = {}
    try:
        for t in targets.values():
            progress(f"bringing up the {t.variant} cluster on ports {t.spec.cluster.base_port}+")
            t.up(progress)
        for t in targets.values():
            progress(f"warm-up run on {t.variant}")
            t.run(WARMUP, 0, cfg.run_timeout, lambda done, total: None)
        for rnd in range(1, cfg.rounds + 1):
            order = VARIANTS if rnd % 2 else tuple(reversed(VARIANTS))
            for s in cfg.scenarios:
                for v in order:
                    label = f"round {rnd}/{cfg.rounds} {s.name} on {v}"
                    progress(label)
                    fig = targets[v].run(
                        s, rnd, cfg.run_timeout,
                        lambda done, total, label=label: on_poll and on_poll(label, done, total))
                    runs.append(fig)
        for v in VARIANTS:
            progress(f"measuring the quiet {v} scheduler for {cfg.idle_seconds:.0f}s")
            idle[v] = targets[v].idle_scheduler_share(cfg.idle_seconds)
    finally:
        for t in targets.values():
            progress(f"stopping the {t.variant} cluster")
            try:
                t.down()
            except Exception as e:  # keep stopping the other one
                progress(f"could not stop {t.variant}: {e}")
    restored, left = stock_differences(cfg)
    return BenchResult(runs, idle, planned_airflow_settings(targets["tuned"].spec), cfg, started, time.time(),
                       restored, left)
