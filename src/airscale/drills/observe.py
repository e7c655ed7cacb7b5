"""Reading what a drill needs from the metadata database and the supervisor.

The database, not the REST API, is read: the api-server may be the part a drill kills.
Every read opens its own short connection, so a database failover costs one failed read.
"""

from __future__ import annotations

import json

from airscale.drills.verdict import TaskObs
from airscale.runtime.cluster import Cluster


def _query(cluster: Cluster, sql: str, args: tuple = ()) -> list[tuple]:
    return cluster.query(sql, *args)


def run_states(cluster: Cluster, dag_id: str, run_ids: list[str]) -> dict[str, str]:
    rows = _query(cluster, "SELECT run_id, state FROM dag_run WHERE dag_id = %s AND run_id = ANY(%s)",
                  (dag_id, run_ids))
    return {r: s for r, s in rows}


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


def alerts_since(cluster: Cluster, since: float) -> list[str]:
    """Alerts the bundled receiver got since `since` (firing ones, by name), when monitoring
    runs with the local receiver; empty otherwise."""
    from airscale.observe.stack import MonitoringLayout

    path = MonitoringLayout.of(cluster.layout.root).alerts_jsonl
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    names = []
    for line in lines:
        try:
            a = json.loads(line)
        except ValueError:
            continue
        if a.get("received_at", 0) >= since and a.get("status") == "firing" and a.get("alertname"):
            label = a["alertname"] + (f" ({a['labels'].get('component')})" if a.get("labels", {}).get("component") else "")
            if label not in names:
                names.append(label)
    return names
