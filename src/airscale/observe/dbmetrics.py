"""Gauges read from the Airflow metadata database at scrape time (a custom Collector).

Why at scrape time: the scheduler's own gauges say what it last saw, from one scheduler; the
database says what is true now, for all of them. Each query is cheap as history grows: it
filters on an indexed column (task_instance.state, job, dag_run.run_after) to the few rows
that are active or recent, never a scan of all history, and every label has a bounded set of
values (states, queues from the spec, job hostnames seen in the last day, at most
MAX_DAGS DAG ids). BENCHMARKS.md has the scrape time with 100,000 task instances.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

# Non-terminal states: few rows at any moment, whatever the history (ti_state index).
ACTIVE_STATES = ("scheduled", "queued", "running", "deferred", "up_for_retry", "up_for_reschedule")
JOB_TYPES = {"SchedulerJob": "scheduler", "DagProcessorJob": "dag-processor", "TriggererJob": "triggerer"}
MAX_DAGS = 200
RECENT_RUNS = "6 hours"

Q_TI_BY_STATE = (
    "SELECT state, queue, count(*) FROM task_instance WHERE state IN %s GROUP BY state, queue"
)
Q_OLDEST_QUEUED = (
    "SELECT queue, EXTRACT(EPOCH FROM (now() - min(queued_dttm))) FROM task_instance "
    "WHERE state = 'queued' GROUP BY queue"
)
Q_IMPORT_ERRORS = "SELECT count(*) FROM import_error"
# Newest row per component; components not seen for a day drop out (bounded hostnames).
Q_HEARTBEATS = (
    "SELECT DISTINCT ON (hostname, job_type) hostname, job_type, state, "
    "EXTRACT(EPOCH FROM (now() - latest_heartbeat)) FROM job "
    "WHERE job_type IN ('SchedulerJob', 'DagProcessorJob', 'TriggererJob') "
    "AND latest_heartbeat > now() - interval '1 day' "
    "ORDER BY hostname, job_type, latest_heartbeat DESC"
)
# Failed tasks that ended within the window, per DAG (ti_state index: only failed rows).
Q_RECENT_FAILURES = (
    "SELECT dag_id, count(*) FROM task_instance WHERE state = 'failed' "
    "AND end_date > now() - %s::interval GROUP BY dag_id ORDER BY 2 DESC LIMIT %s"
)
# Latest finished run per DAG among recent runs (run_after index).
Q_DAG_RUNS = (
    "SELECT DISTINCT ON (dag_id) dag_id, state, EXTRACT(EPOCH FROM (end_date - start_date)), "
    "EXTRACT(EPOCH FROM (start_date - run_after)) FROM dag_run "
    "WHERE run_after > now() - interval '" + RECENT_RUNS + "' AND end_date IS NOT NULL "
    "AND start_date IS NOT NULL ORDER BY dag_id, end_date DESC LIMIT %s"
)
Q_RUNNING_RUNS = (
    "SELECT state, count(*) FROM dag_run WHERE state IN ('queued', 'running') GROUP BY state"
)


class MetadataCollector:
    """Yields airscale_* gauges from the metadata DB; `connect` returns a DB-API connection."""

    def __init__(self, connect: Callable[[], object], queues: list[str], failure_window: str = "15m",
                 clock: Callable[[], float] = time.monotonic):
        self._connect = connect
        self._conn = None
        self.queues = queues
        self.failure_window = _pg_interval(failure_window)
        self._clock = clock
        # prometheus_client serves scrapes from several threads; they share one connection.
        self._lock = threading.Lock()

    def describe(self) -> list:
        return []  # collect() talks to the database: don't run it at registration time

    def _cursor(self):
        if self._conn is None or getattr(self._conn, "closed", 0):
            self._conn = self._connect()
            self._conn.autocommit = True
        return self._conn.cursor()

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            return iter(list(self._collect()))

    def _collect(self) -> Iterator[Metric]:
        start = self._clock()
        up = GaugeMetricFamily("airscale_metadata_db_up", "1 if the exporter could read the metadata database")
        try:
            families = list(self._read())
        except Exception as e:  # any DB error: report down, reconnect next scrape
            if self._conn is not None:
                try:
                    self._conn.close()
                except Exception:
                    pass
            self._conn = None
            up.add_metric([], 0)
            yield up
            err = GaugeMetricFamily("airscale_metadata_db_error", "Last database error", labels=["error"])
            err.add_metric([type(e).__name__], 1)
            yield err
        else:
            up.add_metric([], 1)
            yield up
            yield from families
        took = GaugeMetricFamily("airscale_metadata_scrape_seconds", "Time the metadata queries took")
        took.add_metric([], self._clock() - start)
        yield took

    def _read(self) -> Iterator[Metric]:
        cur = self._cursor()
        try:
            cur.execute(Q_TI_BY_STATE, (ACTIVE_STATES,))
            counts = {(state, queue): n for state, queue, n in cur.fetchall()}
            ti = GaugeMetricFamily(
                "airscale_task_instances", "Task instances in a non-terminal state, by state and queue",
                labels=["state", "queue"],
            )
            # Every configured queue x state exists, at 0 when empty: rules and panels see 0, not nothing.
            keys = {(s, q) for s in ACTIVE_STATES for q in self.queues} | set(counts)
            for state, queue in sorted(keys, key=lambda k: (k[0], k[1] or "")):
                ti.add_metric([state, queue or ""], counts.get((state, queue), 0))
            yield ti

            cur.execute(Q_OLDEST_QUEUED)
            ages = {q: float(a or 0) for q, a in cur.fetchall()}
            oldest = GaugeMetricFamily(
                "airscale_oldest_queued_task_age_seconds",
                "Age of the oldest task instance in state queued, per queue (0: none queued)",
                labels=["queue"],
            )
            for q in sorted(set(self.queues) | {k or "" for k in ages}):
                oldest.add_metric([q], max(0.0, ages.get(q, 0.0)))
            yield oldest

            cur.execute(Q_IMPORT_ERRORS)
            errors = GaugeMetricFamily("airscale_dag_import_errors", "DAG files that failed to import")
            errors.add_metric([], cur.fetchone()[0])
            yield errors

            # Changes when PostgreSQL restarts, or when the endpoint reaches another node after
            # a failover (alert DatabaseRestarted); the Debian postgres_exporter has no such metric.
            cur.execute("SELECT extract(epoch FROM pg_postmaster_start_time()), inet_server_port()")
            started, port = cur.fetchone()
            start = GaugeMetricFamily("airscale_database_start_time_seconds",
                                      "When the PostgreSQL serving the metadata database started (epoch)",
                                      labels=["server_port"])
            start.add_metric([str(port or "")], float(started))
            yield start

            cur.execute(Q_HEARTBEATS)
            age = GaugeMetricFamily(
                "airscale_job_heartbeat_age_seconds",
                "Seconds since the newest heartbeat of each scheduler, dag-processor and triggerer",
                labels=["job_type", "hostname", "component"],
            )
            running = GaugeMetricFamily(
                "airscale_job_running",
                "1 if that component's newest job row is in state running (0: it stopped or failed)",
                labels=["job_type", "hostname", "component"],
            )
            for host, job_type, state, seconds in cur.fetchall():
                labels = [JOB_TYPES.get(job_type, job_type), host, host.split(".", 1)[0]]
                age.add_metric(labels, max(0.0, float(seconds)))
                running.add_metric(labels, 1 if state == "running" else 0)
            yield age
            yield running

            cur.execute(Q_RECENT_FAILURES, (self.failure_window, MAX_DAGS))
            failed = GaugeMetricFamily(
                "airscale_task_instances_failed_recent",
                f"Task instances failed within the last {self.failure_window}, per DAG",
                labels=["dag_id"],
            )
            for dag_id, n in cur.fetchall():
                failed.add_metric([dag_id], n)
            yield failed

            cur.execute(Q_DAG_RUNS, (MAX_DAGS,))
            duration = GaugeMetricFamily(
                "airscale_dag_run_last_duration_seconds",
                f"Duration of the latest finished run of each DAG (runs of the last {RECENT_RUNS})",
                labels=["dag_id", "state"],
            )
            delay = GaugeMetricFamily(
                "airscale_dag_run_last_schedule_delay_seconds",
                "Start of the latest finished run of each DAG minus when it was due (run_after)",
                labels=["dag_id"],
            )
            for dag_id, state, secs, late in cur.fetchall():
                duration.add_metric([dag_id, state], float(secs or 0))
                delay.add_metric([dag_id], max(0.0, float(late or 0)))
            yield duration
            yield delay

            cur.execute(Q_RUNNING_RUNS)
            runs = dict(cur.fetchall())
            active = GaugeMetricFamily("airscale_dag_runs", "DAG runs queued or running", labels=["state"])
            for state in ("queued", "running"):
                active.add_metric([state], runs.get(state, 0))
            yield active
        finally:
            cur.close()


def _pg_interval(duration: str) -> str:
    """Prometheus duration (15m) -> PostgreSQL interval ('15 minutes')."""
    units = {"ms": "milliseconds", "s": "seconds", "m": "minutes", "h": "hours", "d": "days",
             "w": "weeks", "y": "years"}
    for suffix in ("ms", "s", "m", "h", "d", "w", "y"):
        if duration.endswith(suffix) and duration[: -len(suffix)].isdigit():
            return f"{duration[: -len(suffix)]} {units[suffix]}"
    raise ValueError(f"not a duration: {duration!r}")
