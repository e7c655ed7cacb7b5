"""A job that a supervised daemon of the cluster runs every so often: the db-cleaner
(`airscale.dbcare.schedule`) and scheduled backups (`airscale.backup.schedule`).

Why a component rather than cron or an Airflow DAG: it starts and stops with the cluster
(`airscale up` / `down`), logs where every component logs (`airscale logs <name>`), and needs
nothing on the host.

The decision is pure (`decide`); the loop (`run_every`) only reads the clock, runs the job and
lets it record its outcome in a JSON state file, so a restart of the cluster neither runs the
job again at once nor forgets one that is due:
- the first run comes `min(every, FIRST_DELAY_S)` after the daemon starts (not at once: `up`
  has just done the heavy lifting, and a cluster restarted more often than `every` would
  otherwise never run it);
- then every `every` after the last run's start;
- after a failure, again after `min(every, RETRY_S)`, not at the next period: a database that
  was briefly down should not wait another day.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

FIRST_DELAY_S = 600.0
RETRY_S = 900.0
MAX_SLEEP_S = 60.0  # wake up at least this often, so a stop is quick and the clock is re-read


@dataclass(frozen=True)
class Decision:
    run: bool
    next_at: datetime
    reason: str


def decide(now: datetime, started: datetime, last_start: datetime | None, last_ok: bool, every_s: float,
           job: str = "run") -> Decision:
    """Whether to run the job now, else when. `started`: when this daemon started;
    `last_start`/`last_ok`: the last run's start and outcome (None: never ran)."""
    if last_start is None:
        due = started + timedelta(seconds=min(every_s, FIRST_DELAY_S))
        reason = f"first {job} of this cluster"
    elif not last_ok:
        due = last_start + timedelta(seconds=min(every_s, RETRY_S))
        reason = f"retry after a failed {job}"
    else:
        due = last_start + timedelta(seconds=every_s)
        reason = f"every {every_s / 3600:g} h"
    return Decision(now >= due, due, reason)


def sleep_seconds(now: datetime, d: Decision) -> float:
    return max(0.0, min(MAX_SLEEP_S, (d.next_at - now).total_seconds()))


def write_json_atomic(path: Path, raw: dict) -> None:
    """Write the state file whole or not at all: a stop during the write leaves the old state,
    and a reader (the exporter) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(raw))
    tmp.replace(path)


def run_every(job: str, every_s: float, last: Callable[[], tuple[datetime | None, bool]],
              attempt: Callable[[datetime], None], failed: Callable[[datetime, Exception], None],
              clock: Callable[[], datetime], log: logging.Logger) -> None:
    """Forever: wait for the next due time, then `attempt(begin)`, which records its success;
    an exception is logged and handed to `failed(begin, error)` to record, and the loop lives on."""
    started = clock()
    while True:
        last_start, last_ok = last()
        d = decide(clock(), started, last_start, last_ok, every_s, job)
        if not d.run:
            time.sleep(sleep_seconds(clock(), d))
            continue
        begin = clock()
        log.info("%s starts (%s)", job, d.reason)
        try:
            attempt(begin)
        except Exception as e:  # logged, recorded and retried: the loop must live on
            log.exception("%s failed; retry in %.0f s", job, min(every_s, RETRY_S))
            failed(begin, e)
