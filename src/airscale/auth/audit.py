"""Who did what: Airflow's event log (the `log` table), filtered and shaped for `airscale audit`.

Airflow writes a row for every REST API call that changes something (trigger_dag_run,
patch_dag, delete_dag_run, ...) with the logged-in user in `owner`, and one for every CLI
command with the Unix account. Building the query and shaping the rows are pure; the CLI runs
the query. Filters are bound parameters, never spliced into the SQL.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from airscale.errors import AirscaleError

_SINCE = re.compile(r"(\d{1,6})([smhdw])")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
MAX_ROWS = 10_000
# Events named after a task state: a task's own progress, logged with the DAG's `owner`
# attribute (not a person) as the user. Left out unless asked for (`--tasks`).
TASK_STATE_EVENTS = ("queued", "running", "success", "failed", "skipped", "up_for_retry",
                     "up_for_reschedule", "upstream_failed", "deferred", "restarting", "removed", "scheduled")


def parse_since(text: str, now: datetime) -> datetime:
    """`30m`, `2h`, `7d`, `1w` before `now`, or an ISO time (2026-12-06T14:00:00+00:00)."""
    if m := _SINCE.fullmatch(text.strip()):
        return now - timedelta(**{_UNIT[m.group(2)]: int(m.group(1))})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise AirscaleError(f"--since {text!r} is neither a duration nor a time",
                            "write e.g. --since 30m, 2h, 7d or 2026-12-06T14:00:00+00:00") from None
    return when if when.tzinfo else when.replace(tzinfo=now.tzinfo)


@dataclass(frozen=True)
class Query:
    sql: str
    params: tuple


def query(since: datetime | None, user: str | None, dag: str | None, limit: int, tasks: bool = False) -> Query:
    where, params = [], []
    if not tasks:
        where.append("event <> ALL(%s)")
        params.append(list(TASK_STATE_EVENTS))
    if since is not None:
        where.append("dttm >= %s")
        params.append(since)
    if user is not None:
        where.append("owner = %s")
        params.append(user)
    if dag is not None:
        where.append("dag_id = %s")
        params.append(dag)
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    # The newest `limit` rows, printed oldest first.
    sql = ("SELECT * FROM (SELECT id, dttm, owner, event, dag_id, task_id, run_id, extra FROM log "
           f"{clause}ORDER BY id DESC LIMIT %s) recent ORDER BY id")
    return Query(sql, (*params, min(limit, MAX_ROWS)))


@dataclass(frozen=True)
class Event:
    when: datetime
    user: str | None
    event: str
    dag_id: str | None
    task_id: str | None
    run_id: str | None
    extra: dict | str | None

    def as_json(self) -> dict:
        return {"when": self.when.isoformat(), "user": self.user, "event": self.event, "dag_id": self.dag_id,
                "task_id": self.task_id, "run_id": self.run_id, "extra": self.extra}


def event_of(row: tuple) -> Event:
    _id, when, owner, event, dag_id, task_id, run_id, extra = row
    try:
        extra = json.loads(extra) if extra else None
    except ValueError:  # Airflow writes JSON, but older rows or plugins may not
        pass
    return Event(when, owner, event, dag_id, task_id, run_id, extra)
