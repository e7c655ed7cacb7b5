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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from airscale.bench import metrics
from airscale.bench.scenarios import Scenario, dag_file
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
    if "autoscaling" in Spec.model_fields:
        data["autoscaling"] = {"enabled": False}  # the same number of workers for both
    if variant == "tuned":
        data["tuning"] = {"enabled": True, "workload": cfg.profile.model_dump()}
    else:
        # airscale derives refresh_interval 30 for every cluster; stock is 300.
        data["airflow_config"] = {"dag_processor": {"refresh_interval": 300}}
    spec = Spec.model_validate(data)
    return spec.model_copy(update={"base_dir": cfg.root})


def write_dags(cfg: BenchConfig) -> None:
    folder = cfg.root / "dags"
    folder.mkdir(parents=True, exist_ok=True)
    for s in cfg.scenarios:
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
        self.client = AirflowClient(api_url(self.spec), "admin", self.cluster.secrets().admin_password)

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
        c.wait_for_dag(s.dag_id, timeout=300)
        c.unpause(s.dag_id)
        cpu0 = self.cpu()
        run_id = c.trigger(s.dag_id)

        def poll(state, counts, total):
            on_poll(counts.get("success", 0) + counts.get("failed", 0), s.tasks)

        result = c.wait_for_run(s.dag_id, run_id, timeout, on_poll=poll)
        cpu1 = self.cpu()
        by_kind = {k: cpu1[k] - cpu0.get(k, 0.0) for k in cpu1}
        rows = self.task_rows(s.dag_id, run_id)
        fig = metrics.figures(s.name, s.kind, self.variant, rnd, rows,
                              scheduler_cpu_s=by_kind.get("scheduler", 0.0),
                              cluster_cpu_s=sum(by_kind.values()))
        fig.cpu_by_kind = by_kind
        fig.run_state = result.state
        return fig

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
    return BenchResult(runs, idle, planned_airflow_settings(targets["tuned"].spec), cfg, started, time.time())
