"""Playing the benchmark on its clusters and timing it: the scenarios, the many-DAG parse
passes and the compressed profile, and `run_bench`, which runs them all on stock and tuned.

Every measurement follows the cluster in its metadata database rather than through the REST
API: lighter on the cluster being measured, and an api-server slowed by a loaded machine
cannot fail the bench. The REST API only triggers runs (with our own run ids, so a trigger
retried after a timeout gets 409, not a second run).

Order matters for fairness: the scenarios alternate which cluster goes first in every round,
which spreads slow moments (other clusters on the machine) over both variants (the report
gives ratios per round as well as medians). The many-DAG scenarios run one cluster at a time,
since parse passes and the profile would compete for the same two cores.

The clusters are driven through `driver.Target`; their specs come from `specs`; what is found
is returned as a `results.BenchResult`.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Callable

from airscale.bench import metrics, statsd
from airscale.bench import profile as prof
from airscale.bench.driver import Target, prepare_root, tree_cpu
from airscale.bench.results import Accelerators, BenchResult
from airscale.bench.scenarios import SLEEP_S, WARMUP, Scenario
from airscale.bench.specs import VARIANTS, BenchConfig, bench_spec, density_scenario, stock_differences, write_dags
from airscale.errors import AirscaleError


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


# --- one scenario ------------------------------------------------------------------------------
def run_scenario(t: Target, s: Scenario, rnd: int, timeout: float,
                 on_poll: Callable[[int, int], None]) -> metrics.RunFigures:
    """Trigger one run of the scenario's DAG, wait for it and take its figures."""
    c = t.client
    _retry(lambda: c.wait_for_dag(s.dag_id, timeout=300))
    _retry(lambda: c.unpause(s.dag_id))
    cpu0 = t.cpu()
    t0 = time.monotonic()
    # Our own run id: a trigger retried after a timeout then gets 409, not a second run.
    run_id = f"bench-{t.variant}-{s.name}-{rnd}-{uuid.uuid4().hex[:6]}"
    _retry(lambda: _trigger(t, s.dag_id, run_id))
    state = _wait(t, s, run_id, timeout, on_poll)
    t1 = time.monotonic()
    cpu1 = t.cpu()
    by_kind = {k: cpu1[k] - cpu0.get(k, 0.0) for k in cpu1}
    rows = task_rows(t, s.dag_id, run_id)
    fig = metrics.figures(s.name, s.kind, t.variant, rnd, rows,
                          scheduler_cpu_s=by_kind.get("scheduler", 0.0),
                          cluster_cpu_s=sum(by_kind.values()))
    fig.cpu_by_kind = by_kind
    fig.run_state = state
    fig.loop_ms = t.loop_ms(t0, t1)
    return fig


def _trigger(t: Target, dag_id: str, run_id: str) -> None:
    r = t.client._http.post(f"/api/v2/dags/{dag_id}/dagRuns",
                            json={"dag_run_id": run_id, "logical_date": None, "conf": {}})
    if r.status_code >= 400 and r.status_code != 409:
        raise AirscaleError(f"triggering {dag_id} failed: {r.status_code} {r.text[:200]}")


def _wait(t: Target, s: Scenario, run_id: str, timeout: float, on_poll: Callable[[int, int], None]) -> str:
    """Follow the run in the database until it has finished; its state."""
    conn = t.connect()
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
                    f"bench run {run_id} of {s.dag_id} on {t.variant} not finished after {timeout:.0f}s",
                    f"look at the cluster's logs under {t.cluster.layout.logs}")
            time.sleep(0.5)
    finally:
        conn.close()


def task_rows(t: Target, dag_id: str, run_id: str) -> list[metrics.TaskRow]:
    conn = t.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT task_id, state, queued_dttm, start_date, end_date FROM task_instance "
                "WHERE dag_id = %s AND run_id = %s", (dag_id, run_id))
            return [metrics.TaskRow(*r) for r in cur.fetchall()]
    finally:
        conn.close()


# --- many DAG files ----------------------------------------------------------------------------
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


def parse_pass(t: Target, files: int, load: prof.Profile | None, timeout: float,
               on_poll: Callable[[int, int], None]) -> prof.ParseFigures:
    """Time one pass of the dag-processor over `files` generated DAG files: stop it, write
    the files, start it and wait until every generated DAG has been written to the
    database since (dag.last_parsed_time), which the manager sets as it stores each file's
    result. A start-up scans the whole bundle at once, so the pass does not wait for the
    bundle refresh interval (300 s at stock) that a file added to a running processor would."""
    from datetime import timezone

    folder = t.spec.dags_path / "many"
    folder.mkdir(parents=True, exist_ok=True)
    t.cluster.stop_component("dag-processor")
    for i in range(files):
        f = folder / f"{many_dag_id(load, i)}.py"
        if not f.exists():
            f.write_text(many_dag_file(load, i))
    conn = t.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT now()")
            started = cur.fetchone()[0]
        mono0 = time.monotonic()
        t.cluster.start_component("dag-processor", wait=False)
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
        cpu = tree_cpu(t.pids({"dag-processor"}))
    finally:
        conn.close()
    fig = prof.parse_figures(t.variant, files, started.astimezone(timezone.utc),
                             [p.astimezone(timezone.utc) for p in parsed],
                             t.dag_processor_setting("min_file_process_interval"),
                             int(t.dag_processor_setting("parsing_processes")))
    fig.cpu_s = cpu
    # The manager reports each full pass when its queue next runs empty, a moment after the
    # last file is stored; the first report after the start is ours.
    reported: list[float] = []
    gauge_deadline = time.monotonic() + 10
    while t.statsd and not reported and time.monotonic() < gauge_deadline:
        reported = t.statsd.values(statsd.TOTAL_PARSE_TIME, mono0)
        time.sleep(0.5)
    fig.reported_pass_s = reported[0] if reported else math.nan
    return fig


EDIT_SPACING_S = 32  # past Airflow's 30 s min_serialized_dag_update_interval


def density_figures(t: Target, s: Scenario, timeout: float) -> prof.DensityFigures:
    """The workers' PSS warm and idle, then with every slot running one of `s`'s sleeping tasks
    (taken 3 s after the last one started, so their start-up is over), then the run's end."""
    c = t.client
    _retry(lambda: c.wait_for_dag(s.dag_id, timeout=300))
    _retry(lambda: c.unpause(s.dag_id))
    idle = t.worker_pss_mib()
    run_id = f"bench-{t.variant}-{s.name}-{uuid.uuid4().hex[:6]}"
    _retry(lambda: _trigger(t, s.dag_id, run_id))
    conn = t.connect()
    running, deadline = 0, time.monotonic() + min(timeout, SLEEP_S - 10)
    try:
        while time.monotonic() < deadline:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM task_instance WHERE dag_id = %s AND run_id = %s AND "
                            "state = 'running'", (s.dag_id, run_id))
                running = cur.fetchone()[0]
            if running >= s.tasks:
                break
            time.sleep(0.5)
    finally:
        conn.close()
    time.sleep(3)
    busy = t.worker_pss_mib()
    _wait(t, s, run_id, timeout, lambda done, total: None)
    return prof.DensityFigures(t.variant, s.tasks, idle, busy, running)


def folder_figures(t: Target, files: int, load: prof.Profile | None, quiet_s: float, edits: int,
                   timeout: float = 120.0) -> prof.FolderFigures:
    """After a pass over `files` DAG files: the dag-processor's CPU while none changes (over
    `quiet_s`, after 15 s for the pass's last results), then `edits` edits of one file, each
    timed from the write to its new version in serialized_dag, then a new file timed to its
    DAG's row. A write is timed from the database's clock read just before it. Edits are
    spaced past Airflow's `[core] min_serialized_dag_update_interval` (30 s), within which it
    does not store a DAG again (airscale parses such an edit again after it; stock re-parses
    every file anyway)."""
    prefix = load.prefix if load is not None else MANY_PREFIX
    folder = t.spec.dags_path / "many"
    fig = prof.FolderFigures(t.variant, files, quiet_s, math.nan,
                             interval_s=t.dag_processor_setting("min_file_process_interval"),
                             refresh_s=t.dag_processor_setting("refresh_interval"))
    time.sleep(15)
    pids = t.pids({"dag-processor"})
    c0, m0 = tree_cpu(pids), time.monotonic()
    time.sleep(quiet_s)
    fig.quiet_cpu_share = (tree_cpu(pids) - c0) / (time.monotonic() - m0)
    i = files - 1
    dag_id = many_dag_id(load, i)
    conn = t.connect()

    def wait_for(sql: str, args: tuple, since) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                (at,) = cur.fetchone()
            if at is not None and at >= since:
                return (at - since).total_seconds()
            time.sleep(0.1)
        return math.nan

    def db_now():
        with conn.cursor() as cur:
            cur.execute("SELECT now()")
            return cur.fetchone()[0]

    try:
        for k in range(edits):
            since = db_now()
            (folder / f"{dag_id}.py").write_text(prof.edited_dag_file(prefix, i, k))
            fig.edit_s.append(wait_for("SELECT max(last_updated) FROM serialized_dag WHERE dag_id = %s",
                                       (dag_id,), since))
            time.sleep(EDIT_SPACING_S)
        new_id = f"{prefix}_new_{t.variant}"
        since = db_now()
        (folder / f"{new_id}.py").write_text(prof._DAG.format(
            what="a new file", dag_id=new_id, schedule='"@hourly"', paused="True"))
        fig.new_file_s = wait_for("SELECT max(last_parsed_time) FROM dag WHERE dag_id = %s", (new_id,), since)
    finally:
        conn.close()
    return fig


def play_profile(t: Target, load: prof.Profile, on_poll: Callable[[int, int], None],
                 drain_timeout: float) -> prof.ProfileFigures:
    """Trigger the profile's runs at the compressed rate for its window, then let the
    cluster drain and read every task of those runs."""
    from datetime import datetime, timezone

    plan = prof.triggers(load)
    offered = len(plan) * prof.TASKS_PER_RUN
    tag = f"profile-{t.variant}-{uuid.uuid4().hex[:6]}"
    conn = t.connect()

    def finished() -> int:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM task_instance WHERE run_id LIKE %s "
                        "AND state IN ('success', 'failed', 'upstream_failed')", (tag + "%",))
            return cur.fetchone()[0]

    try:
        cpu0 = t.cpu()
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
            _retry(lambda: _trigger(t, load.dag_id(i), run_id))
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
        cpu1 = t.cpu()
        with conn.cursor() as cur:
            cur.execute("SELECT run_id, task_id, state, queued_dttm, start_date, end_date FROM task_instance "
                        "WHERE run_id LIKE %s", (tag + "%",))
            rows = [(r[0], metrics.TaskRow(*r[1:])) for r in cur.fetchall()]
    finally:
        conn.close()
    fig = prof.profile_figures(t.variant, load, len(plan), rows, window_start, window_end)
    fig.loop_ms = t.loop_ms(t0, t1)
    fig.trigger_lag_s = lag
    fig.cpu_by_kind = {k: cpu1[k] - cpu0.get(k, 0.0) for k in cpu1}
    return fig


# --- the whole bench ---------------------------------------------------------------------------
def both(targets, action: Callable[[Target], None]) -> None:
    """`action` on every target at once; once all are done, the first error is raised."""
    from concurrent.futures import ThreadPoolExecutor

    targets = list(targets)
    with ThreadPoolExecutor(len(targets)) as pool:
        futures = [pool.submit(action, t) for t in targets]
    for f in futures:
        f.result()


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
        progress("bringing up the clusters: " + ", ".join(
            f"{t.variant} on ports {t.spec.cluster.base_port}+" for t in targets.values()))
        # Side by side: nothing is measured yet, and each `up` mostly waits on its processes.
        both(targets.values(), lambda t: t.up(progress))
        for t in targets.values():
            progress(f"warm-up run on {t.variant}")
            run_scenario(t, WARMUP, 0, cfg.run_timeout, lambda done, total: None)
        for rnd in range(1, cfg.rounds + 1):
            order = VARIANTS if rnd % 2 else tuple(reversed(VARIANTS))
            for s in cfg.scenarios:
                for v in order:
                    label = f"round {rnd}/{cfg.rounds} {s.name} on {v}"
                    progress(label)
                    fig = run_scenario(
                        targets[v], s, rnd, cfg.run_timeout,
                        lambda done, total, label=label: on_poll and on_poll(label, done, total))
                    runs.append(fig)
        idle_loops: dict[str, list[float]] = {}
        for v in VARIANTS:
            progress(f"measuring the quiet {v} scheduler for {cfg.idle_seconds:.0f}s")
            m0 = time.monotonic()
            idle[v] = targets[v].idle_scheduler_share(cfg.idle_seconds)
            idle_loops[v] = targets[v].loop_ms(m0, time.monotonic())
        density = []
        if cfg.density:
            for v in VARIANTS:
                progress(f"memory of {v}'s worker with its {cfg.concurrency} slots running a task")
                density.append(density_figures(targets[v], density_scenario(cfg), cfg.run_timeout))
        parses, loads, folders = run_many(cfg, targets, progress, on_poll)
    finally:
        accelerators = {t.variant: Accelerators.from_logs(t.cluster.layout.logs) for t in targets.values()}

        def stop(t: Target) -> None:
            progress(f"stopping the {t.variant} cluster")
            try:
                t.down()
            except Exception as e:  # keep stopping the other one
                progress(f"could not stop {t.variant}: {e}")

        both(targets.values(), stop)
    restored, left = stock_differences(cfg)
    return BenchResult(runs, idle, planned_airflow_settings(targets["tuned"].spec), cfg, started, time.time(),
                       restored, left, parses, loads, idle_loops, accelerators, folders, density)


def run_many(cfg: BenchConfig, targets: dict[str, Target], progress: Callable[[str], None],
             on_poll: Callable[[str, int, int], None] | None) -> tuple[list, list, list]:
    """The many-DAG scenarios, one cluster at a time (parse passes and the profile would
    compete for the same two cores), stock first. After its turn a cluster's Airflow processes
    are stopped, or its dag-processor would keep re-parsing 1,000 files (every 30 s at stock)
    during the other's turn."""
    parses: list[prof.ParseFigures] = []
    loads: list[prof.ProfileFigures] = []
    folders: list[prof.FolderFigures] = []
    steps = many_steps(cfg.parse_files, cfg.load)
    if not steps:
        return parses, loads, folders
    for v in sorted(VARIANTS, key=lambda v: v != cfg.many_first):
        t = targets[v]
        for files, timed, play in steps:
            label = f"{v}: parse {files} DAG files"
            progress(label if timed else f"{v}: load the profile's {files} DAGs")
            load0 = os.getloadavg()[0]
            fig = parse_pass(t, files, cfg.load, cfg.parse_timeout,
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
                loads.append(play_profile(t, load,
                                          lambda done, total, label=label: on_poll and on_poll(label, done, total),
                                          drain_timeout=max(120.0, load.window_s)))
                loads[-1].load_avg = (load0, os.getloadavg()[0])
        if cfg.parse_files and cfg.folder_quiet_s > 0:
            files = max(cfg.parse_files)
            progress(f"{v}: the dag-processor over {files} unchanged files for {cfg.folder_quiet_s:.0f}s, "
                     f"then {cfg.folder_edits} edits and a new file")
            folders.append(folder_figures(t, files, cfg.load, cfg.folder_quiet_s, cfg.folder_edits))
        # Nothing else is measured on this cluster: stop what could still work off a backlog
        # (a profile that did not drain) while the other cluster takes its turn.
        t.stop_airflow(progress)
    return parses, loads, folders
