"""Backups on a schedule: a supervised component (`backup`) of the cluster, like the db-cleaner.

The decision is pure (`decide(now, started, state, every)`, `to_delete(names, pattern, keep)`);
the loop reads the clock, runs `take.take_backup`, deletes archives past `backup.keep` and
records the outcome in `<data_dir>/state/backup.json`, which the exporter reads for
`airscale_backup_last_success_timestamp_seconds` (and the `BackupTooOld` alert). So:
- the first backup comes `min(every, FIRST_DELAY_S)` after the component starts (`up` has just
  done the heavy lifting), then every `every` after the last one's start;
- after a failure, again after `min(every, RETRY_S)`: a database that was briefly down should
  not leave the cluster without a backup for another period;
- retention deletes only this cluster's archives by their name (`take.archive_name`), oldest
  first, and only after a good backup: a run of failures never deletes the last good archives.
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

BACKUP = "backup"
FIRST_DELAY_S = 600.0
RETRY_S = 900.0
MAX_SLEEP_S = 60.0  # wake up at least this often, so a stop is quick and the clock is re-read

log = logging.getLogger("airscale.backup.schedule")


@dataclass(frozen=True)
class State:
    """What the schedule remembers between runs (the JSON file; the exporter reads it too)."""

    since: datetime | None = None  # when scheduled backups began: the age of "never backed up"
    last_start: datetime | None = None  # start of the last backup, good or not
    last_ok: bool = True
    last_ok_at: datetime | None = None  # end of the last good backup
    archive: str = ""
    detail: str = ""


@dataclass(frozen=True)
class Decision:
    run: bool
    next_at: datetime
    reason: str


def decide(now: datetime, started: datetime, state: State, every_s: float) -> Decision:
    """Whether to back up now, else when. `started`: when this process started."""
    if state.last_start is None:
        due = started + timedelta(seconds=min(every_s, FIRST_DELAY_S))
        reason = "first backup of this cluster"
    elif not state.last_ok:
        due = state.last_start + timedelta(seconds=min(every_s, RETRY_S))
        reason = "retry after a failed backup"
    else:
        due = state.last_start + timedelta(seconds=every_s)
        reason = f"every {every_s / 3600:g} h"
    return Decision(now >= due, due, reason)


def sleep_seconds(now: datetime, d: Decision) -> float:
    return max(0.0, min(MAX_SLEEP_S, (d.next_at - now).total_seconds()))


def to_delete(names: list[str], is_ours, keep: int) -> list[str]:
    """The archives past the newest `keep` of this cluster's (pure). Names carry a UTC time
    stamp of fixed width, so their order is their age; other names are never chosen."""
    ours = sorted(n for n in names if is_ours(n))
    return ours[:-keep] if keep > 0 else ours


# --- state file ----------------------------------------------------------------------------------
def _time(v) -> datetime | None:
    return datetime.fromisoformat(v) if v else None


def load_state(path: Path) -> State:
    try:
        raw = json.loads(path.read_text())
        return State(_time(raw.get("since")), _time(raw.get("last_start")), bool(raw.get("last_ok", True)),
                     _time(raw.get("last_ok_at")), str(raw.get("archive", "")), str(raw.get("detail", "")))
    except FileNotFoundError:
        return State()
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        log.warning("ignoring unreadable %s (%s)", path, e)
        return State()


def save_state(path: Path, state: State) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(state).items()}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(raw))
    tmp.replace(path)  # atomic: the exporter never reads half a file


# --- the component -------------------------------------------------------------------------------
def wanted(spec: Spec) -> bool:
    return spec.backup.every_hours > 0 and spec.spec_file is not None


def backup_component(spec: Spec) -> Component:
    from airscale.runtime.daemon import spec_daemon_component

    # Last: it needs only the database, and stops first on `down` (a dump cut short leaves
    # no archive: only the renamed, whole file is one).
    return spec_daemon_component(BACKUP, "airscale.backup.schedule", spec, stage=AFTER_WORKERS_STAGE)


def prune(folder: Path, cluster: str, keep: int) -> list[str]:
    from airscale.backup.take import archive_pattern

    pattern = archive_pattern(cluster)
    names = [p.name for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
    gone = to_delete(names, lambda n: bool(pattern.match(n)), keep)
    for n in gone:
        (folder / n).unlink(missing_ok=True)
    return gone


def run(spec: Spec, clock=lambda: datetime.now(timezone.utc)) -> None:
    from airscale.backup.take import take_backup
    from airscale.runtime.layout import Layout

    layout = Layout(spec.data_path)
    every_s = spec.backup.every_hours * 3600
    path = layout.backup_state
    started = clock()
    state = load_state(path)
    if state.since is None:
        save_state(path, State(since=started))
    log.info("a backup every %g h into %s, keeping %d; state in %s", every_s / 3600, spec.backup_path,
             spec.backup.keep, path)
    while True:
        state = load_state(path)
        d = decide(clock(), started, state, every_s)
        if not d.run:
            time.sleep(sleep_seconds(clock(), d))
            continue
        begin = clock()
        log.info("backup starts (%s)", d.reason)
        try:
            r = take_backup(spec, layout.secrets_file, progress=log.info, now=lambda: begin)
        except Exception as e:  # noqa: BLE001 - logged, recorded and retried; the loop must live on
            log.exception("backup failed; retry in %.0f s", min(every_s, RETRY_S))
            save_state(path, State(state.since or started, begin, False, state.last_ok_at, state.archive,
                                   f"{type(e).__name__}: {e}"[:500]))
            continue
        gone = prune(spec.backup_path, spec.cluster.name, spec.backup.keep)
        detail = f"{r.size / 1e6:.1f} MB in {r.seconds:.1f}s" + (f"; deleted {', '.join(gone)}" if gone else "")
        log.info("backup done: %s: %s", r.path, detail)
        save_state(path, State(state.since or started, begin, True, clock(), str(r.path), detail))


def main(argv: list[str] | None = None) -> int:
    from airscale.runtime.daemon import spec_daemon

    return spec_daemon(__doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    sys.exit(main())
