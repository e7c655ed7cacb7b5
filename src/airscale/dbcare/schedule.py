"""`airscale db clean` on a schedule: a supervised component (`db-cleaner`) of the cluster.

When it runs is `airscale.runtime.periodic`'s rule (first clean `min(every, 10 min)` after the
component starts, then every `every`, sooner after a failure). A component rather than an
Airflow DAG: a DAG would run `airflow db clean` from a worker slot and delete the rows of its
own runs' peers; the Helm chart uses a CronJob for the same reason. The loop runs
`dbcare.clean.clean` and records the outcome in `<data_dir>/state/db-clean.json`.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from airscale.runtime import periodic
from airscale.runtime.component import AFTER_WORKERS_STAGE, Component
from airscale.spec import Spec

DB_CLEANER = "db-cleaner"

log = logging.getLogger("airscale.dbcare.schedule")


@dataclass(frozen=True)
class State:
    """What the cleaner remembers between runs (the JSON file)."""

    last_start: datetime | None = None  # start of the last clean, successful or not
    last_ok: bool = True
    detail: str = ""


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
    raw = asdict(state)
    raw["last_start"] = state.last_start.isoformat() if state.last_start else None
    periodic.write_json_atomic(path, raw)


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
    log.info("cleaning rows older than %d days every %g h; state in %s", days, every_s / 3600, path)

    def last() -> tuple[datetime | None, bool]:
        state = load_state(path)
        return state.last_start, state.last_ok

    def attempt(begin: datetime) -> None:
        r = clean(cluster, days, now=begin)
        detail = (f"cut-off {r.before.isoformat(timespec='seconds')}: task instances + DAG runs "
                  f"{r.rows_before} -> {r.rows_after}; db clean {r.clean_seconds:.1f}s, "
                  f"VACUUM ANALYZE {r.vacuum_seconds:.1f}s")
        log.info("clean done: %s", detail)
        save_state(path, State(begin, True, detail))

    def failed(begin: datetime, e: Exception) -> None:
        save_state(path, State(begin, False, f"{type(e).__name__}: {e}"[:500]))

    periodic.run_every("clean", every_s, last, attempt, failed, clock, log)


def main(argv: list[str] | None = None) -> int:
    from airscale.runtime.daemon import spec_daemon

    return spec_daemon(__doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    sys.exit(main())
