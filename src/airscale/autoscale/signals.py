"""What the autoscaler knows about each queue: read-only, one snapshot per decision.

Sources, each the place where the fact is recorded first:

- metadata DB: task instances queued and running per queue (what the Helm chart's KEDA query
  counts), how many of them belong to scheduled DAG runs (load the forecast announced), the
  scheduled runs in progress per queue, and the forecast: unpaused DAGs whose
  `next_dagrun_create_after` falls within the look-ahead, with when each is due and the tasks
  per queue of its latest run (or of the serialized DAG when it never ran), each DAG capped at
  its `max_active_tasks` (Airflow 3 applies it per run). The forecast is read before the
  scheduled runs in progress: a run created between the two reads is then seen by both, never
  by neither;
- Redis: messages waiting in the queue's lists (kombu keeps one list per priority step);
- supervisord: which worker processes exist and run;
- Celery's control API: per worker, the queues it consumes (a running worker that does not
  consume its queue is draining, so a restarted autoscaler finds drains where it left them),
  and its active and reserved tasks.

Nothing here decides or acts.
"""

from __future__ import annotations

import json
import logging
import socket
import zlib
from dataclasses import dataclass, field

import redis as redis_client

from airscale.autoscale.plan import WorkerState, WorkerView
from airscale.autoscale.policy import Due, Observation
from airscale.runtime import broker, health
from airscale.runtime.hostname import component_hostname
from airscale.runtime.secrets import Secrets
from airscale.runtime.supervisor import RUNNING, Supervisor
from airscale.spec import Spec

log = logging.getLogger(__name__)

# kombu's Redis transport: a queue with priorities is one list per step, named
# "<queue>\x06\x16<step>" (step 0 is the plain name); default steps 0, 3, 6, 9.
PRIORITY_SEP = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)
# A run whose creation time passed less than this long ago has probably not been created yet
# (the scheduler creates runs every loop): still count it as coming.
FORECAST_GRACE_S = 30
CONTROL_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class NodeReport:
    """One worker's answer to the control API."""

    queues: frozenset[str]
    active: int
    reserved: int


@dataclass(frozen=True)
class QueueSnapshot:
    queue: str
    queued: int
    running: int
    broker_depth: int | None
    forecast: int  # tasks of the runs due within the look-ahead (the sum over `due`)
    workers: tuple[WorkerView, ...]
    due: tuple[Due, ...] = ()  # those runs: when each is due, and its tasks
    scheduled: int = 0  # of queued + running: tasks of scheduled runs
    scheduled_runs: int = 0  # scheduled runs in progress that touch the queue

    @property
    def worker_busy(self) -> int | None:
        known = [w.busy for w in self.workers if w.busy is not None]
        if known:
            return sum(known)
        # No answer at all: zero is only known when no worker process exists.
        alive = any(w.state is not WorkerState.STANDBY for w in self.workers)
        return None if alive else 0

    def observation(self, current: int, startup_s: float | None = None,
                    memory_available_mib: float | None = None) -> Observation:
        return Observation(
            current=current, queued=self.queued, running=self.running,
            broker_depth=self.broker_depth, worker_busy=self.worker_busy, due=self.due,
            scheduled=self.scheduled, scheduled_runs=self.scheduled_runs, startup_s=startup_s,
            memory_available_mib=memory_available_mib,
        )


@dataclass(frozen=True)
class Snapshot:
    queues: dict[str, QueueSnapshot]
    forecast_runs: tuple[dict, ...] = field(default_factory=tuple)  # what the forecast counted


def node_name(worker: str) -> str:
    """Celery node name of a worker component (runtime.components.celery_node_name, %h expanded)."""
    return f"{worker}@{socket.gethostname()}"


def priority_keys(queue: str) -> list[str]:
    return [queue if step == 0 else f"{queue}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS]


def tasks_in_serialized_dag(data: dict, default_queue: str) -> dict[str, int]:
    """Tasks per queue of a serialized DAG (Airflow 3 format: dag.tasks[].__var.queue)."""
    dag = data.get("dag", data)
    out: dict[str, int] = {}
    for t in dag.get("tasks", []):
        var = t.get("__var", t) if isinstance(t, dict) else {}
        q = var.get("queue") or default_queue
        out[q] = out.get(q, 0) + 1
    return out


# supervisord states of a process that may answer the control API. STARTING lasts `startsecs`
# (5 s) whatever the process does: a worker answering before that already consumes.
ALIVE = (RUNNING, "STARTING")


def worker_state(supervisor_state: str | None, report: NodeReport | None, queue: str) -> WorkerState:
    """A worker's state from what supervisord and the control API say (pure)."""
    if supervisor_state in (None, "STOPPED", "EXITED", "FATAL"):
        return WorkerState.STANDBY
    if supervisor_state == "STOPPING":
        return WorkerState.STOPPING
    if supervisor_state not in ALIVE or report is None:
        return WorkerState.STARTING  # BACKOFF, or not yet answering
    return WorkerState.SERVING if queue in report.queues else WorkerState.DRAINING


class Signals:
    def __init__(self, spec: Spec, secrets: Secrets, supervisor: Supervisor):
        self.spec = spec
        self.secrets = secrets
        self.supervisor = supervisor
        # Both find the primary through the Sentinels with ha.broker (airscale.runtime.broker).
        self.app = broker.celery_app(spec, secrets)
        self.redis = broker.client(spec, secrets, socket_timeout=3)
        self.default_queue = str(
            spec.airflow_config.get("operators", {}).get("default_queue") or next(iter(spec.queues))
        )

    def close(self) -> None:
        self.app.close()
        self.redis.close()

    # -- metadata DB ------------------------------------------------------------------------
    def _rows(self, sql: str) -> list[tuple]:
        """Rows of one query on a short-lived connection (the loop runs for days)."""
        with health.db_connect(self.spec, self.secrets) as conn, conn.cursor() as cur:
            cur.execute(sql)
            rows = cur.fetchall()
        conn.close()
        return rows

    def task_counts(self) -> dict[str, tuple[int, int]]:
        """queue -> (queued, running)."""
        return {q: (v[0], v[1]) for q, v in self._counts().items()}

    def _counts(self) -> dict[str, tuple[int, int, int]]:
        """queue -> (queued, running, of these the tasks of scheduled runs)."""
        rows = self._rows(
            "SELECT ti.queue, ti.state, dr.run_type = 'scheduled', count(*) FROM task_instance ti "
            "JOIN dag_run dr ON dr.dag_id = ti.dag_id AND dr.run_id = ti.run_id "
            "WHERE ti.state IN ('queued', 'running') GROUP BY 1, 2, 3"
        )
        out: dict[str, list[int]] = {}
        for queue, state, scheduled, n in rows:
            slot = out.setdefault(queue, [0, 0, 0])
            slot[0 if state == "queued" else 1] += n
            if scheduled:
                slot[2] += n
        return {q: (v[0], v[1], v[2]) for q, v in out.items()}

    def scheduled_runs(self) -> tuple[dict[str, int], int]:
        """Scheduled DAG runs in progress per queue they have task instances on, and those with
        no task instance yet (they may touch any queue)."""
        rows = self._rows(
            "SELECT ti.queue, count(DISTINCT (dr.dag_id, dr.run_id)) FROM dag_run dr "
            "LEFT JOIN task_instance ti ON ti.dag_id = dr.dag_id AND ti.run_id = dr.run_id "
            "WHERE dr.run_type = 'scheduled' AND dr.state IN ('queued', 'running') GROUP BY 1"
        )
        per_queue = {q: int(n) for q, n in rows if q is not None}
        return per_queue, sum(int(n) for q, n in rows if q is None)

    def forecast(self, lookahead: float) -> tuple[dict[str, int], list[dict]]:
        """Tasks per queue of DAG runs due within `lookahead` seconds, and the runs counted."""
        due, runs = self.forecast_due(lookahead)
        return {q: sum(d.tasks for d in ds) for q, ds in due.items()}, runs

    def forecast_due(self, lookahead: float) -> tuple[dict[str, tuple[Due, ...]], list[dict]]:
        """Per queue, the DAG runs due within `lookahead` seconds (when, and their tasks)."""
        if lookahead <= 0:
            return {}, []
        with health.db_connect(self.spec, self.secrets) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT dag_id, max_active_tasks, "
                "EXTRACT(EPOCH FROM (next_dagrun_create_after - now())) FROM dag "
                "WHERE NOT is_paused AND NOT is_stale AND next_dagrun_create_after IS NOT NULL "
                "AND next_dagrun_create_after > now() - make_interval(secs => %s) "
                "AND next_dagrun_create_after <= now() + make_interval(secs => %s)",
                (FORECAST_GRACE_S, lookahead),
            )
            rows = cur.fetchall()
            due: dict[str, list[Due]] = {}
            runs: list[dict] = []
            for dag_id, max_active, in_s in rows:
                per_queue = self._tasks_of_latest_run(cur, dag_id) or self._tasks_of_serialized(cur, dag_id)
                cap = max_active or 0
                counted = {q: min(n, cap) if cap > 0 else n for q, n in per_queue.items()}
                for q, n in counted.items():
                    due.setdefault(q, []).append(Due(float(in_s), n))
                runs.append({"dag_id": dag_id, "due_in_s": round(float(in_s), 1), "tasks": counted})
        conn.close()
        return {q: tuple(ds) for q, ds in due.items()}, runs

    @staticmethod
    def _tasks_of_latest_run(cur, dag_id: str) -> dict[str, int]:
        cur.execute(
            "SELECT ti.queue, count(*) FROM task_instance ti "
            "WHERE ti.dag_id = %s AND ti.run_id = (SELECT run_id FROM dag_run WHERE dag_id = %s "
            "ORDER BY run_after DESC LIMIT 1) GROUP BY ti.queue",
            (dag_id, dag_id),
        )
        return {q: int(n) for q, n in cur.fetchall()}

    def _tasks_of_serialized(self, cur, dag_id: str) -> dict[str, int]:
        cur.execute(
            "SELECT data, data_compressed FROM serialized_dag WHERE dag_id = %s "
            "ORDER BY last_updated DESC LIMIT 1",
            (dag_id,),
        )
        row = cur.fetchone()
        if not row:
            return {}
        data, compressed = row
        if data is None and compressed is not None:
            data = json.loads(zlib.decompress(bytes(compressed)))
        elif isinstance(data, str):
            data = json.loads(data)
        return tasks_in_serialized_dag(data or {}, self.default_queue)

    def running_on(self, worker: str) -> int:
        """Task instances the DB says run on this worker (Airflow hostname per component)."""
        with health.db_connect(self.spec, self.secrets) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM task_instance WHERE state = 'running' AND hostname = %s",
                (component_hostname(worker),),
            )
            n = cur.fetchone()[0]
        conn.close()
        return int(n)

    # -- broker ---------------------------------------------------------------------------
    def broker_depths(self, queues: list[str]) -> dict[str, int]:
        pipe = self.redis.pipeline()
        for q in queues:
            for key in priority_keys(q):
                pipe.llen(key)
        lengths = pipe.execute()
        n = len(PRIORITY_STEPS)
        return {q: sum(lengths[i * n:(i + 1) * n]) for i, q in enumerate(queues)}

    # -- workers --------------------------------------------------------------------------
    def inspect(self, nodes: list[str]) -> dict[str, NodeReport]:
        """Ask the given Celery nodes what they consume and hold. Nodes that do not answer
        within the timeout are left out (still starting, or stuck)."""
        if not nodes:
            return {}
        insp = self.app.control.inspect(destination=nodes, timeout=CONTROL_TIMEOUT_S)
        queues = insp.active_queues() or {}
        answering = [n for n in nodes if n in queues]
        if not answering:
            return {}
        insp = self.app.control.inspect(destination=answering, timeout=CONTROL_TIMEOUT_S)
        active = insp.active() or {}
        reserved = insp.reserved() or {}
        out = {}
        for node in answering:
            if node not in active or node not in reserved:
                continue  # an incomplete answer is no answer: never guess a worker is idle
            out[node] = NodeReport(
                queues=frozenset(q["name"] for q in queues[node]),
                active=len(active[node]),
                reserved=len(reserved[node]),
            )
        return out

    def busy(self, worker: str) -> tuple[int, int] | None:
        """A fresh (active, reserved) of one worker, or None if it did not answer."""
        report = self.inspect([node_name(worker)]).get(node_name(worker))
        return None if report is None else (report.active, report.reserved)

    def workers(self, infos: dict[str, dict] | None = None) -> dict[str, list[WorkerView]]:
        infos = self.supervisor.infos() if infos is None else infos
        names = {q: self.spec.worker_names(q) for q in self.spec.queues}
        running = [n for ns in names.values() for n in ns if infos.get(n, {}).get("statename") in ALIVE]
        reports = self.inspect([node_name(n) for n in running])
        out: dict[str, list[WorkerView]] = {}
        for q, ns in names.items():
            views = []
            for i, n in enumerate(ns, start=1):
                report = reports.get(node_name(n))
                state = worker_state(infos.get(n, {}).get("statename"), report, q)
                views.append(WorkerView(
                    n, q, i, state,
                    active=report.active if report else None,
                    reserved=report.reserved if report else None,
                ))
            out[q] = views
        return out

    # -- everything -------------------------------------------------------------------------
    def read(self, lookahead: float) -> Snapshot:
        queues = list(self.spec.queues)
        counts = self._counts()
        forecast, runs = self.forecast_due(lookahead)
        sched_runs, sched_runs_any = self.scheduled_runs()  # after the forecast: see the docstring
        try:
            depths: dict[str, int] | None = self.broker_depths(queues)
        except redis_client.RedisError as e:
            log.warning("broker depth unavailable (%s); deciding from the database alone", e)
            depths = None
        workers = self.workers()
        snaps = {}
        for q in queues:
            queued, running, scheduled = counts.get(q, (0, 0, 0))
            snaps[q] = QueueSnapshot(
                q, queued, running, depths.get(q) if depths is not None else None,
                sum(d.tasks for d in forecast.get(q, ())), tuple(workers[q]), due=forecast.get(q, ()),
                scheduled=scheduled, scheduled_runs=sched_runs.get(q, 0) + sched_runs_any,
            )
        return Snapshot(snaps, tuple(runs))
