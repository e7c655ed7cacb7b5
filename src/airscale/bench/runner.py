"""Running the benchmark: bring up a stock and a tuned cluster, run each scenario on both,
alternating which goes first, and collect figures (all the I/O of `airscale bench`).

Both clusters are identical but for the tuning plan: same DAG files, one scheduler, one Celery
worker with the same concurrency, same machine, same run. The stock cluster keeps Airflow's
defaults except what airscale needs to run at all (ports, secrets, executor, paths).
Alternating the order in every round spreads slow moments (other clusters on the machine)
over both variants; the report gives ratios per round as well as medians.
"""

from __future__ import annotations

import configparser
import math
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from airscale.bench import metrics, statsd
from airscale.bench import profile as prof
from airscale.bench.scenarios import WARMUP, Scenario, dag_file
from airscale.bench.stock import stock_overrides
from airscale.errors import AirscaleError
from airscale.runtime import forkserver
from airscale.spec import Spec
from airscale.spec.workload import WorkloadProfile

VARIANTS = ("stock", "tuned")

# The bench's own workload, as an operator would describe it: short trivial tasks on one
# 2-core worker of 8 slots, a latency goal of a quarter second, up to 1,000 small DAG files
# (the parse scenario) whose parse costs 0.2-0.3 s each in the dag-processor (measured by the
# bench itself: seconds per file in the parse table of the report).
BENCH_PROFILE = WorkloadProfile(
    dags=1000, tasks_per_day=50_000, peak_concurrent_tasks=8, typical_task_seconds=1.0,
    burstiness=10, latency_goal_seconds=0.25, parse_seconds_per_dag=0.3,
)


@dataclass
class BenchConfig:
    scenarios: tuple[Scenario, ...]
    rounds: int
    root: Path  # data dirs and DAG files live under it
    ports: dict[str, int] = field(default_factory=lambda: {"stock": 30800, "tuned": 30900})
    concurrency: int = 8
    idle_seconds: float = 20.0  # quiet period over which scheduler CPU is measured
    run_timeout: float = 900.0
    profile: WorkloadProfile = field(default_factory=lambda: BENCH_PROFILE)
    parse_files: tuple[int, ...] = ()  # parse a pass of this many DAG files on each cluster
    load: prof.Profile | None = None  # the many-DAG profile compressed in time, None: skip
    parse_timeout: float = 900.0
    many_first: str = "stock"  # which cluster takes its many-DAG turn first


def bench_spec(cfg: BenchConfig, variant: str) -> Spec:
    spec = _cluster_spec(cfg, variant)
    overrides: dict[str, dict] = {}
    if variant == "stock":
        overrides, _ = stock_overrides(_derived(spec))
    # Both send statsd to the bench (scheduler loop duration, parse time), set after the stock
    # overrides, which would put statsd_on back to its default (off).
    overrides = {**overrides, "metrics": statsd.settings(statsd_port(spec))}
    return spec.model_copy(update={"airflow_config": overrides})


def _cluster_spec(cfg: BenchConfig, variant: str) -> Spec:
    """The variant's cluster before the bench's own Airflow overrides."""
    data: dict = {
        "cluster": {"name": f"bench-{variant}", "data_dir": str(cfg.root / variant),
                    "base_port": cfg.ports[variant]},
        "schedulers": {"count": 1},
        "queues": {"default": {"min_workers": 1, "max_workers": 1, "concurrency": cfg.concurrency}},
        # A DAGs folder per cluster: the many-DAG scenarios add files to one cluster at a time.
        "dags_folder": str(dags_folder(cfg, variant)),
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
    if variant == "stock":
        # Airflow's default result backend is the metadata database; airscale's is Redis.
        data["broker"] = {"result_backend": "database"}
    return Spec.model_validate(data).model_copy(update={"base_dir": cfg.root})


def statsd_port(spec: Spec) -> int:
    """The cluster's own statsd port (its exporter's, which the bench does not run)."""

    return spec.ports.statsd


def dags_folder(cfg: BenchConfig, variant: str) -> Path:
    return cfg.root / f"dags-{variant}"


def _derived(spec: Spec) -> dict[str, dict]:
    """The settings airscale would write for `spec` (secrets are placeholders: only keys matter)."""
    from airscale.assembly import CAPABILITIES
    from airscale.runtime.airflow_config import merged_settings
    from airscale.runtime.layout import Layout
    from airscale.runtime.secrets import Secrets

    return merged_settings(spec, Layout(spec.data_path), Secrets.generate(), CAPABILITIES)


def stock_differences(cfg: BenchConfig) -> tuple[dict[str, dict], list[str]]:
    """What the stock cluster sets back to Airflow's defaults, and what it could not."""
    return stock_overrides(_derived(_cluster_spec(cfg, "stock")))


def write_dags(cfg: BenchConfig) -> None:
    for v in VARIANTS:
        folder = dags_folder(cfg, v)
        folder.mkdir(parents=True, exist_ok=True)
        for s in (WARMUP, *cfg.scenarios):
            (folder / f"{s.dag_id}.py").write_text(dag_file(s))


def prepare_root(root: Path) -> None:
    """PostgreSQL runs as `postgres` when we are root: every folder on the way must be enterable."""
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)


# --- CPU accounting ------------------------------------------------------------------------------
def tree_cpu(pids: list[int], forkserver_socket: Path | None = None) -> float:
    """CPU seconds of processes and all their descendants, including reaped children
    (task processes are forked and reaped by the worker's pool processes); a worker forked by
    the fork server counts for its client (airscale.runtime.forkserver.family)."""
    total = 0.0
    seen: set[int] = set()
    for pid in pids:
        try:
            procs = forkserver.family(pid, forkserver_socket)
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
        from airscale.assembly import open_cluster

        self.variant = variant
        self.spec = spec
        self.cluster = open_cluster(spec)
        self.client = None
        self.statsd: statsd.Listener | None = None

    def up(self, progress: Callable[[str], None]) -> None:
        from airscale.runtime.airflow_config import api_url
        from airscale.workload.client import AirflowClient

        try:
            self.statsd = statsd.Listener(statsd_port(self.spec))
        except OSError as e:
            raise AirscaleError(f"the bench cannot listen for the {self.variant} cluster's statsd on "
                                f"127.0.0.1:{statsd_port(self.spec)}: {e.strerror}",
                                "choose another --stock-port / --tuned-port (the port is base_port + 6)") from None
        self.cluster.up(lambda m: progress(f"{self.variant}: {m}"))
        # A generous timeout: the machine may be loaded by other clusters.
        self.client = AirflowClient(api_url(self.spec), "admin", self.cluster.secrets().admin_password,
                                    timeout=60)

    def down(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.statsd is not None:
            self.statsd.close()
        self.cluster.down(purge=True)

    def loop_ms(self, since: float, until: float) -> list[float]:
        return self.statsd.values(statsd.LOOP_DURATION, since, until) if self.statsd else []

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
        sock = self.cluster.layout.forkserver_socket
        return {k: tree_cpu(pids, sock) for k, pids in by_kind.items()}

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
        t0 = time.monotonic()
        # Our own run id: a trigger retried after a timeout then gets 409, not a second run.
        run_id = f"bench-{self.variant}-{s.name}-{rnd}-{uuid.uuid4().hex[:6]}"
        _retry(lambda: self._trigger(s.dag_id, run_id))
        state = self._wait(s, run_id, timeout, on_poll)
        t1 = time.monotonic()
        cpu1 = self.cpu()
        by_kind = {k: cpu1[k] - cpu0.get(k, 0.0) for k in cpu1}
        rows = self.task_rows(s.dag_id, run_id)
        fig = metrics.figures(s.name, s.kind, self.variant, rnd, rows,
                              scheduler_cpu_s=by_kind.get("scheduler", 0.0),
                              cluster_cpu_s=sum(by_kind.values()))
        fig.cpu_by_kind = by_kind
        fig.run_state = state
        fig.loop_ms = self.loop_ms(t0, t1)
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

    # --- many DAG files ----------------------------------------------------------------------
    def dag_processor_setting(self, key: str) -> float:
        """The dag-processor setting this cluster runs with (airflow.cfg, else Airflow's default)."""
        from airscale.tuning.planner import AIRFLOW_STOCK

        cfg = configparser.ConfigParser(interpolation=None)
        cfg.read(self.cluster.layout.airflow_cfg)
        return float(cfg.get("dag_processor", key, fallback=AIRFLOW_STOCK[("dag_processor", key)]))

    def _conn(self):
        from airscale.runtime.health import db_connect

        conn = db_connect(self.spec, self.cluster.secrets())
        conn.autocommit = True
        return conn

    def parse(self, files: int, load: prof.Profile | None, timeout: float,
              on_poll: Callable[[int, int], None]) -> prof.ParseFigures:
        """Time one pass of the dag-processor over `files` generated DAG files: stop it, write
        the files, start it and wait until every generated DAG has been written to the
        database since (dag.last_parsed_time), which the manager sets as it stores each file's
        result. A start-up scans the whole bundle at once, so the pass does not wait for the
        bundle refresh interval (300 s at stock) that a file added to a running processor would."""
        from datetime import timezone

        folder = self.spec.dags_path / "many"
        folder.mkdir(parents=True, exist_ok=True)
        self.cluster.stop_component("dag-processor")
        for i in range(files):
            f = folder / f"{many_dag_id(load, i)}.py"
            if not f.exists():
                f.write_text(many_dag_file(load, i))
        conn = self._conn()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT now()")
                started = cur.fetchone()[0]
            mono0 = time.monotonic()
            self.cluster.start_component("dag-processor", wait=False)
            deadline = time.monotonic() + timeout
            like = f"{MANY_PREFIX}%" if load is None else f"{load.prefix}%"
            while True:
                with conn.cursor() as cur:
                    cur.execute("SELECT last_parsed_time FROM dag WHERE dag_id LIKE %s AND last_parsed_time >= %s",
                                (like, started))
                    parsed = [r[0] for r in cur.fetchall()]
                on_poll(len(parsed), files)
                if len(parsed) >= files or time.monotonic() > deadline:
                    break
                time.sleep(1.0)
            cpu = tree_cpu(self.pids({"dag-processor"}))
        finally:
            conn.close()
        fig = prof.parse_figures(self.variant, files, started.astimezone(timezone.utc),
                                 [t.astimezone(timezone.utc) for t in parsed],
                                 self.dag_processor_setting("min_file_process_interval"),
                                 int(self.dag_processor_setting("parsing_processes")))
        fig.cpu_s = cpu
        # The manager reports each full pass when its queue next runs empty, a moment after the
        # last file is stored; the first report after the start is ours.
        reported: list[float] = []
        gauge_deadline = time.monotonic() + 10
        while self.statsd and not reported and time.monotonic() < gauge_deadline:
            reported = self.statsd.values(statsd.TOTAL_PARSE_TIME, mono0)
            time.sleep(0.5)
        fig.reported_pass_s = reported[0] if reported else math.nan
        return fig

    def play(self, load: prof.Profile, on_poll: Callable[[int, int], None],
             drain_timeout: float) -> prof.ProfileFigures:
        """Trigger the profile's runs at the compressed rate for its window, then let the
        cluster drain and read every task of those runs."""
        from datetime import datetime, timezone

        plan = prof.triggers(load)
        offered = len(plan) * prof.TASKS_PER_RUN
        tag = f"profile-{self.variant}-{uuid.uuid4().hex[:6]}"
        conn = self._conn()

        def finished() -> int:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM task_instance WHERE run_id LIKE %s "
                            "AND state IN ('success', 'failed', 'upstream_failed')", (tag + "%",))
                return cur.fetchone()[0]

        try:
            cpu0 = self.cpu()
            window_start = datetime.now(timezone.utc)
            t0 = time.monotonic()
            lag = 0.0
            last_poll = 0.0
            for k, (offset, i) in enumerate(plan):
                wait = t0 + offset - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                lag = max(lag, -wait)
                run_id = f"{tag}-{k:05d}"
                _retry(lambda: self._trigger(load.dag_id(i), run_id))
                if time.monotonic() - last_poll > 3:
                    last_poll = time.monotonic()
                    on_poll(finished(), offered)
            rest = t0 + load.window_s - time.monotonic()
            if rest > 0:
                time.sleep(rest)
            window_end = datetime.now(timezone.utc)
            t1 = time.monotonic()
            deadline = time.monotonic() + drain_timeout
            while (done := finished()) < offered and time.monotonic() < deadline:
                on_poll(done, offered)
                time.sleep(1.0)
            on_poll(done, offered)
            cpu1 = self.cpu()
            with conn.cursor() as cur:
                cur.execute("SELECT run_id, task_id, state, queued_dttm, start_date, end_date FROM task_instance "
                            "WHERE run_id LIKE %s", (tag + "%",))
                rows = [(r[0], metrics.TaskRow(*r[1:])) for r in cur.fetchall()]
        finally:
            conn.close()
        fig = prof.profile_figures(self.variant, load, len(plan), rows, window_start, window_end)
        fig.loop_ms = self.loop_ms(t0, t1)
        fig.trigger_lag_s = lag
        fig.cpu_by_kind = {k: cpu1[k] - cpu0.get(k, 0.0) for k in cpu1}
        return fig


MANY_PREFIX = "airscale_parse"


def many_dag_id(load: prof.Profile | None, i: int) -> str:
    """The profile's DAGs are the first files of the parse scenario, so its 500 DAGs are parsed
    once, and the 1,000-file pass is those 500 plus 500 more."""
    return load.dag_id(i) if load is not None else f"{MANY_PREFIX}_{i:04d}"


def many_dag_file(load: prof.Profile | None, i: int) -> str:
    if load is not None and i < load.dags:
        return prof.profile_dag_file(load, i)
    prefix = load.prefix if load is not None else MANY_PREFIX
    return prof.parse_dag_file(prefix, i)


def many_steps(parse_files: tuple[int, ...], load: prof.Profile | None) -> list[tuple[int, bool, bool]]:
    """(files, time the pass?, play the profile after it?) in order: file counts only grow, and
    the profile plays once its DAGs are all parsed."""
    counts = sorted(set(parse_files) | ({load.dags} if load else set()))
    return [(n, n in parse_files, load is not None and n == load.dags) for n in counts]


@dataclass(frozen=True)
class Accelerators:
    """What a cluster's own logs say airscale's accelerators did (airscale.runtime.airflow_entry)."""

    pacing: bool  # a scheduler logged that it paces its idle sleep
    dag_file_parses: int  # DAG files parsed by worker pool processes for the tasks they forked

    @classmethod
    def from_logs(cls, logs: Path) -> Accelerators:
        def lines(pattern: str):
            for f in sorted(logs.glob(pattern)):
                yield from f.read_text(errors="replace").splitlines()

        return cls(any("airscale pacing:" in x for x in lines("scheduler-*.log")),
                   sum("once for this pool process" in x for x in lines("worker-*.log")))


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
    parses: list[prof.ParseFigures] = field(default_factory=list)
    loads: list[prof.ProfileFigures] = field(default_factory=list)
    idle_loop_ms: dict[str, list[float]] = field(default_factory=dict)
    accelerators: dict[str, Accelerators] = field(default_factory=dict)


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
        idle_loops: dict[str, list[float]] = {}
        for v in VARIANTS:
            progress(f"measuring the quiet {v} scheduler for {cfg.idle_seconds:.0f}s")
            m0 = time.monotonic()
            idle[v] = targets[v].idle_scheduler_share(cfg.idle_seconds)
            idle_loops[v] = targets[v].loop_ms(m0, time.monotonic())
        parses, loads = run_many(cfg, targets, progress, on_poll)
    finally:
        accelerators = {}
        for t in targets.values():
            accelerators[t.variant] = Accelerators.from_logs(t.cluster.layout.logs)
            progress(f"stopping the {t.variant} cluster")
            try:
                t.down()
            except Exception as e:  # keep stopping the other one
                progress(f"could not stop {t.variant}: {e}")
    restored, left = stock_differences(cfg)
    return BenchResult(runs, idle, planned_airflow_settings(targets["tuned"].spec), cfg, started, time.time(),
                       restored, left, parses, loads, idle_loops, accelerators)


def run_many(cfg: BenchConfig, targets: dict[str, Target], progress: Callable[[str], None],
             on_poll: Callable[[str, int, int], None] | None) -> tuple[list, list]:
    """The many-DAG scenarios, one cluster at a time (parse passes and the profile would
    compete for the same two cores), stock first. After its turn a cluster's Airflow processes
    are stopped, or its dag-processor would keep re-parsing 1,000 files (every 30 s at stock)
    during the other's turn."""
    parses: list[prof.ParseFigures] = []
    loads: list[prof.ProfileFigures] = []
    steps = many_steps(cfg.parse_files, cfg.load)
    if not steps:
        return parses, loads
    for v in sorted(VARIANTS, key=lambda v: v != cfg.many_first):
        t = targets[v]
        for files, timed, play in steps:
            label = f"{v}: parse {files} DAG files"
            progress(label if timed else f"{v}: load the profile's {files} DAGs")
            load0 = os.getloadavg()[0]
            fig = t.parse(files, cfg.load, cfg.parse_timeout,
                          lambda done, total, label=label: on_poll and on_poll(label, done, total))
            fig.load_avg = (load0, os.getloadavg()[0])
            if timed:
                parses.append(fig)
            if fig.parsed < files:
                raise AirscaleError(f"{v}: only {fig.parsed} of {files} DAG files parsed in {cfg.parse_timeout:.0f}s",
                                    f"look at the dag-processor's log under {t.cluster.layout.logs}")
            if play:
                load = cfg.load
                label = (f"{v}: profile {load.dags} DAGs x {load.compression:g} for {load.window_s:.0f}s "
                         f"({load.task_rate:.2f} tasks/s)")
                progress(label)
                load0 = os.getloadavg()[0]
                loads.append(t.play(load, lambda done, total, label=label: on_poll and on_poll(label, done, total),
                                    drain_timeout=max(120.0, load.window_s)))
                loads[-1].load_avg = (load0, os.getloadavg()[0])
        # Nothing else is measured on this cluster: stop what could still work off a backlog
        # (a profile that did not drain) while the other cluster takes its turn.
        names = [c.name for c in t.cluster.components()
                 if c.kind in ("scheduler", "dag-processor", "triggerer", "worker") and c.autostart]
        progress(f"{v}: stopping {', '.join(names)}")
        for n in names:  # all at once: a worker's warm shutdown may take a while
            t.cluster.stop_component(n, wait=False)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            infos = t.cluster.supervisor.infos()
            if all(infos.get(n, {}).get("statename") in ("STOPPED", "EXITED", "FATAL") for n in names):
                break
            time.sleep(1.0)
    return parses, loads
