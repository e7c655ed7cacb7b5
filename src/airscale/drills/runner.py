"""Running one drill: workload in, fault at the right moment, watch, judge.

1. the cluster must be healthy (a drill on a sick cluster proves nothing);
2. the workload DAG is installed if missing and N runs are triggered through the REST API;
3. once tasks are in flight (the scenario says when), the fault is injected;
4. the database is polled until every run ends or the timeout passes, and the faulted
   component is polled until it is healthy again;
5. the observations go to the pure `verdict.judge`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from airscale.drills import observe, workload
from airscale.drills.scenarios import SCENARIOS, Context, Fault
from airscale.drills.verdict import TERMINAL_RUN_STATES, Observation, Verdict, judge
from airscale.errors import AirscaleError
from airscale.runtime.airflow_config import api_url
from airscale.runtime.cluster import Cluster
from airscale.runtime.supervisor import RUNNING
from airscale.workload.client import AirflowClient

Progress = Callable[[str], None]


@dataclass(frozen=True)
class DrillConfig:
    runs: int = 6
    seconds: float = 3.0  # each task's sleep
    timeout: float = 300.0  # watch this long after the fault
    target_recovery_s: float = 30.0
    broker_down_s: float = 5.0
    node_down_s: float = 40.0
    dcs_down_s: float = 60.0
    ready_timeout: float = 180.0


def _quiet(_: str) -> None:
    pass


def wait_healthy(cluster: Cluster, timeout: float, progress: Progress = _quiet) -> None:
    """Every component that `up` starts is running and healthy."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            rows = cluster.status()
            bad = [f"{r['component']} ({r['state']}, {r['health']})" for r in rows
                   if (r["state"] == RUNNING and r["healthy"] is False)
                   or (r["state"] not in (RUNNING, "STANDBY"))]
        except Exception as e:  # the database may be failing over  # noqa: BLE001
            bad = [f"status unreadable: {e}"]
        if not bad:
            return
        if time.monotonic() > deadline:
            raise AirscaleError(f"cluster not healthy: {', '.join(bad)}",
                                "look at airscale status; a drill needs a healthy cluster to start from")
        time.sleep(2.0)


def component_healthy(cluster: Cluster, name: str, old_pid: int | None) -> bool:
    try:
        info = cluster.supervisor.info(name)
        if info.get("statename") != RUNNING or info.get("pid") in (None, 0, old_pid):
            return False
        h = cluster.health_of([cluster.component(name)], cluster.secrets())[name]
        return h.ok
    except Exception:  # noqa: BLE001 - anything unreadable is "not yet"
        return False


def _read(fn, attempts: int = 30, delay: float = 2.0):
    """A database read that waits out a failover still in progress (about a minute)."""
    for i in range(attempts):
        try:
            return fn()
        except Exception:  # noqa: BLE001 - psycopg2 errors while the primary changes
            if i == attempts - 1:
                raise
            time.sleep(delay)


def run_drill(cluster: Cluster, name: str, cfg: DrillConfig = DrillConfig(),
              progress: Progress = _quiet) -> Verdict:
    if name not in SCENARIOS:
        raise AirscaleError(f"no drill named {name!r}", f"choose one of: {', '.join(SCENARIOS)}, all")
    scenario = SCENARIOS[name]
    if not cluster.supervisor.is_running():
        raise AirscaleError(f"cluster {cluster.spec.cluster.name!r} is not running",
                            "start it: airscale up --spec FILE")
    why_not = scenario.unsupported(cluster)
    if why_not:
        raise AirscaleError(f"drill {name} does not fit this cluster: {why_not}", "choose another drill")

    progress("checking that the cluster is healthy")
    wait_healthy(cluster, 120, progress)
    dag_id = workload.DAG_ID
    if workload.install(cluster.spec.dags_path):
        progress(f"installed the drill workload {cluster.spec.dags_path / workload.FILE_NAME}")
    client = AirflowClient(api_url(cluster.spec), "admin", cluster.secrets().admin_password)
    try:
        progress(f"waiting for DAG {dag_id} (new DAG files are noticed within 30 s)")
        client.wait_for_dag(dag_id, timeout=180)
        client.unpause(dag_id)
        before = observe.restart_counts(cluster)
        run_ids = [client.trigger(dag_id, {"seconds": cfg.seconds}) for _ in range(cfg.runs)]
    finally:
        client.close()
    progress(f"triggered {len(run_ids)} runs of {dag_id} ({workload.TASKS_PER_RUN} tasks of {cfg.seconds:g}s each)")

    ctx = Context(cluster, dag_id, run_ids, broker_down_s=cfg.broker_down_s, node_down_s=cfg.node_down_s,
                  dcs_down_s=cfg.dcs_down_s)
    deadline = time.monotonic() + cfg.ready_timeout
    while not scenario.ready(ctx):
        if time.monotonic() > deadline:
            raise AirscaleError(f"the workload never got far enough to inject {name} "
                                f"within {cfg.ready_timeout:.0f}s", "look at airscale status")
        time.sleep(0.5)

    # What had succeeded when the fault hit: none of it may be lost (a database failover must
    # not roll back committed task states).
    committed = tuple(t for t in observe.tasks(cluster, dag_id, run_ids) if t.state == "success")
    fault: Fault = scenario.inject(ctx)
    progress(f"fault: {fault.detail}")
    back_at = None
    watch_until = fault.at + cfg.timeout
    states: dict[str, str] = {}
    # When a task success after the fault is first readable: its end_date alone can be older
    # than its commit (a completion that waited in PgBouncer's queue during a failover).
    done_seen_at = None
    while time.time() < watch_until:
        if back_at is None and (fault.recovered() if fault.recovered
                                else component_healthy(cluster, fault.component, fault.old_pid)):
            back_at = time.time()
            progress(f"{fault.component} healthy again after {back_at - fault.at:.1f}s")
        try:
            states = observe.run_states(cluster, dag_id, run_ids)
            if done_seen_at is None and observe.successes_after(cluster, dag_id, run_ids, fault.at):
                done_seen_at = time.time()
        except Exception:  # noqa: BLE001 - database failing over: keep the last states, read again
            pass
        done = len(states) == len(run_ids) and all(s in TERMINAL_RUN_STATES for s in states.values())
        if done and back_at is not None:
            break
        time.sleep(0.5)
    watched_until = time.time()
    time.sleep(1.0)  # the restart listener writes its count a moment after the exit
    expected = scenario.alerts if observe.receiver_active(cluster.spec) else None
    restarts_after = observe.restart_counts(cluster)
    restarted = {n for n, c in restarts_after.items() if c > before.get(n, 0)}
    # An alert still firing from an earlier fault counts only for a component this fault
    # restarted again (`drill all` restarts some twice within the alert's window).
    standing = tuple(a for a in observe.alerts_still_firing(cluster, fault.at)
                     if a.split(" (", 1)[0] in (expected or ())
                     and (" (" not in a or a.split(" (", 1)[1].rstrip(")") in restarted))
    if expected:
        wait = observe.alert_delay(cluster.spec)
        progress(f"waiting up to {wait:.0f}s for the alerts {', '.join(expected)}")
        # From now: the restarts that raise them may have come late (db-failover kills the
        # frozen node only after node_down_s).
        observe.wait_for_alerts(cluster, fault.at, expected, time.time() + wait, standing)
    obs = Observation(
        scenario=name,
        fault_at=fault.at,
        watched_until=watched_until,
        triggered_runs=tuple(run_ids),
        run_states=_read(lambda: observe.run_states(cluster, dag_id, run_ids)),
        tasks_per_run=workload.TASKS_PER_RUN,
        tasks=tuple(_read(lambda: observe.tasks(cluster, dag_id, run_ids))),
        earlier_tries=tuple(_read(lambda: observe.earlier_tries(cluster, dag_id, run_ids))),
        restarts_before=before,
        restarts_after=restarts_after,
        component_back_at=back_at,
        done_seen_at=done_seen_at,
        fault_detail=fault.detail,
        alerts=tuple(observe.alerts_since(cluster, fault.at)),
        alerts_expected=expected,
        alerts_standing=standing,
        committed_before=committed,
    )
    return judge(obs, cfg.target_recovery_s)
