"""`airscale db clean` on a schedule: a supervised component (`db-cleaner`) of the cluster.

Why a component rather than cron or an Airflow DAG: it starts and stops with the cluster
(`airscale up` / `down`), logs where every component logs (`airscale logs db-cleaner`), and
needs nothing on the host. A DAG would run `airflow db clean` from a worker slot and delete
the rows of its own runs' peers; the Helm chart uses a CronJob for the same reason.

The decision is pure (`decide(now, started, state, every)`); the loop only reads the clock,
runs `dbcare.clean.clean` and records the outcome in `<data_dir>/state/db-clean.json`, so a
restart of the cluster neither cleans again at once nor forgets a clean that is due:
- the first clean of a cluster comes `min(every, FIRST_DELAY_S)` after the component starts
  (not at once: `up` has just done the heavy lifting, and a cluster restarted more often than
  `every` would otherwise never clean);
- then every `every` after the last clean's start;
- after a failure, again after `min(every, RETRY_S)`, not at the next period: a database
  that was briefly down should not grow for another day.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airscale.runtime.component import AFTER_WORKERS_STAGE, Component
from airscale.spec import Spec

DB_CLEANER = "db-cleaner"
FIRST_DELAY_S = 600.0
RETRY_S = 900.0
MAX_SLEEP_S = 60.0  # wake up at least this often, so a stop is quick and the clock is re-read

log = logging.getLogger("airscale.dbcare.schedule")


@dataclass(frozen=True)
class State:
    """What the cleaner remembers between runs (the JSON file)."""

    last_start: datetime | None = None  # start of the last clean, successful or not
    last_ok: bool = True
    detail: str = ""


@dataclass(frozen=True)
class Decision:
    run: bool
    next_at: datetime
    reason: str


def decide(now: datetime, started: datetime, state: State, every_s: float) -> Decision:
    """Whether to clean now, else when. `started`: when this cleaner process started."""
    if state.last_start is None:
        due = started + timedelta(seconds=min(every_s, FIRST_DELAY_S))
        reason = "first clean of this cluster"
    elif not state.last_ok:
        due = state.last_start + timedelta(seconds=min(every_s, RETRY_S))
        reason = "retry after a failed clean"
    else:
        due = state.last_start + timedelta(seconds=every_s)
        reason = f"every {every_s / 3600:g} h"
    return Decision(now >= due, due, reason)


def sleep_seconds(now: datetime, d: Decision) -> float:
    return max(0.0, min(MAX_SLEEP_S, (d.next_at - now).total_seconds()))


# --- state file --------------------------------------------------------------------------------
def state_file(spec: Spec) -> Path:
    from airscale.runtime.layout import Layout

    return Layout(spec.data_path).state / "db-clean.json"


def load_state(path: Path) -> State:
    try:
        raw = json.loads(path.read_text())
        return State(datetime.fromisoformat(raw["last_start"]) if raw.get("last_start") else None,
                     bool(raw.get("last_ok", True)), str(raw.get("detail", "")))
    except FileNotFoundError:
        return State()
    except (ValueError, KeyError, TypeError) as e:  # a damaged file: start afresh, say so
        log.warning("ignoring unreadable %s (%s)", path, e)
        return State()


def save_state(path: Path, state: State) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = asdict(state)
    raw["last_start"] = state.last_start.isoformat() if state.last_start else None
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(raw))
    tmp.replace(path)  # atomic: a stop during the write leaves the old state, not half a file


# --- the component -----------------------------------------------------------------------------
def cleaner_component(spec: Spec) -> Component:
    from airscale.runtime.daemon import spec_daemon_component

    # Last: it needs only the database (up and healthy by then), and stops first on `down`.
    # A stop during a clean ends `airflow db clean` with its parent; rows it had not deleted
    # yet wait for the next clean.
    return spec_daemon_component(DB_CLEANER, "airscale.dbcare.schedule", spec, stage=AFTER_WORKERS_STAGE)


def wanted(spec: Spec) -> bool:
    return spec.tuning.db_clean_every_hours > 0 and spec.spec_file is not None


def run(spec: Spec, clock=lambda: datetime.now(timezone.utc)) -> None:
    from airscale.dbcare.clean import clean
    from airscale.runtime.cluster import Cluster

    every_s = spec.tuning.db_clean_every_hours * 3600
    days = spec.tuning.db_retention_days
    path = state_file(spec)
    cluster = Cluster(spec, ())  # only the database and Airflow's CLI environment
    started = clock()
    log.info("cleaning rows older than %d days every %g h; state in %s", days, every_s / 3600, path)
    while True:
        state = load_state(path)
        d = decide(clock(), started, state, every_s)
        if not d.run:
            time.sleep(sleep_seconds(clock(), d))
            continue
        begin = clock()
        log.info("clean starts (%s)", d.reason)
        try:
            r = clean(cluster, days, now=begin)
        except Exception as e:  # noqa: BLE001 - logged, recorded and retried; the loop must live on
            log.exception("clean failed; retry in %.0f s", min(every_s, RETRY_S))
            save_state(path, State(begin, False, f"{type(e).__name__}: {e}"[:500]))
            continue
        detail = (f"cut-off {r.before.isoformat(timespec='seconds')}: task instances + DAG runs "
                  f"{r.rows_before} -> {r.rows_after}; db clean {r.clean_seconds:.1f}s, "
                  f"VACUUM ANALYZE {r.vacuum_seconds:.1f}s")
        log.info("clean done: %s", detail)
        save_state(path, State(begin, True, detail))


def main(argv: list[str] | None = None) -> int:
    from airscale.runtime.daemon import spec_daemon

    return spec_daemon(__doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    sys.exit(main())
