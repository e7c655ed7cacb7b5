"""Reading what a drill needs from the metadata database and the supervisor.

The database, not the REST API, is read: the api-server may be the part a drill kills.
Every read opens its own short connection, so a database failover costs one failed read.
"""

from __future__ import annotations

import json
import time

from airscale.drills.verdict import TaskObs
from airscale.runtime.cluster import Cluster


def _query(cluster: Cluster, sql: str, args: tuple = ()) -> list[tuple]:
    return cluster.query(sql, *args)


def run_states(cluster: Cluster, dag_id: str, run_ids: list[str]) -> dict[str, str]:
    rows = _query(cluster, "SELECT run_id, state FROM dag_run WHERE dag_id = %s AND run_id = ANY(%s)",
                  (dag_id, run_ids))
    return {r: s for r, s in rows}


def successes_after(cluster: Cluster, dag_id: str, run_ids: list[str], at: float) -> int:
    """Task instances that succeeded after `at` and whose success is committed (readable now)."""
    rows = _query(cluster, "SELECT count(*) FROM task_instance WHERE dag_id = %s AND run_id = ANY(%s) "
                  "AND state = 'success' AND end_date > to_timestamp(%s)", (dag_id, run_ids, at))
    return int(rows[0][0])


def _task_rows(cluster: Cluster, table: str, dag_id: str, run_ids: list[str]) -> list[TaskObs]:
    rows = _query(
        cluster,
        "SELECT run_id, task_id, map_index, state, try_number, EXTRACT(EPOCH FROM end_date) "
        f"FROM {table} WHERE dag_id = %s AND run_id = ANY(%s)",
        (dag_id, run_ids),
    )
    return [TaskObs(r, t, s, n, float(e) if e is not None else None, m) for r, t, m, s, n, e in rows]


def tasks(cluster: Cluster, dag_id: str, run_ids: list[str]) -> list[TaskObs]:
    """The latest try of each task instance."""
    return _task_rows(cluster, "task_instance", dag_id, run_ids)


def earlier_tries(cluster: Cluster, dag_id: str, run_ids: list[str]) -> list[TaskObs]:
    """Tries that were retried (Airflow moves them to task_instance_history)."""
    return _task_rows(cluster, "task_instance_history", dag_id, run_ids)


def running_by_host(cluster: Cluster, dag_id: str, run_ids: list[str]) -> dict[str, int]:
    """Running task instances per component (`worker-default-1`), from task_instance.hostname."""
    rows = _query(
        cluster,
        "SELECT hostname, count(*) FROM task_instance WHERE dag_id = %s AND run_id = ANY(%s) "
        "AND state = 'running' GROUP BY hostname",
        (dag_id, run_ids),
    )
    return {(h or "").split(".", 1)[0]: n for h, n in rows}


def restart_counts(cluster: Cluster) -> dict[str, int]:
    try:
        data = json.loads(cluster.layout.restarts_file.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return {name: entry.get("restarts", 0) for name, entry in data.items()}


def _receiver_log(cluster: Cluster) -> list[dict]:
    """What the bundled receiver logged, in order (empty without monitoring)."""
    from airscale.observe.stack import MonitoringLayout

    path = MonitoringLayout.of(cluster.layout.root).alerts_jsonl
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            a = json.loads(line)
        except ValueError:
            continue
        if a.get("alertname"):
            out.append(a)
    return out


def _label(a: dict) -> str:
    component = (a.get("labels") or {}).get("component")
    return a["alertname"] + (f" ({component})" if component else "")


def alerts_since(cluster: Cluster, since: float) -> list[str]:
    """Alerts that started firing after `since` ("Name (component)"), from the receiver's log."""
    names = []
    for a in _receiver_log(cluster):
        # Firing, and started after `since`: a notification also repeats older alerts of its group.
        if a.get("received_at", 0) >= since and a.get("status") == "firing" \
                and _epoch(a.get("starts_at"), since) >= since - 1.0 and _label(a) not in names:
            names.append(_label(a))
    return names


def alerts_still_firing(cluster: Cluster, since: float) -> list[str]:
    """Alerts that started before `since` and are still firing (not resolved since): a fault that
    repeats one (a component restarted again within the alert's window) raises no new alert,
    but the person was told and the alert still stands."""
    last: dict[tuple, dict] = {}
    for a in _receiver_log(cluster):
        last[(a["alertname"], tuple(sorted((a.get("labels") or {}).items())))] = a
    return sorted({_label(a) for a in last.values()
                   if a.get("status") == "firing" and _epoch(a.get("starts_at"), since) < since - 1.0})


def _epoch(iso: str | None, default: float) -> float:
    """Alertmanager's startsAt (RFC 3339, up to nanoseconds) as epoch seconds."""
    import re
    from datetime import datetime

    if not iso:
        return default
    try:
        return datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", iso).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default


def receiver_active(spec) -> bool:
    """Alerts land in the bundled receiver's log, so a drill can check them."""
    from airscale.observe.settings import monitoring_active

    return monitoring_active(spec) and spec.monitoring.local_receiver


def alert_delay(spec) -> float:
    """Longest time from a fault to its alert in the receiver (pure): the next scrape, the next
    rule evaluation, Alertmanager's group wait, plus slack for a loaded host."""
    m = spec.monitoring
    return m.scrape_interval_seconds + m.evaluation_interval_seconds + m.group_wait_seconds + 20.0


def wait_for_alerts(cluster: Cluster, since: float, names: tuple[str, ...], until: float,
                    standing: tuple[str, ...] = ()) -> list[str]:
    from airscale.drills.verdict import missing_alerts

    while True:
        fired = alerts_since(cluster, since)
        if not missing_alerts(names, tuple(fired) + standing) or time.time() >= until:
            return fired
        time.sleep(1.0)
