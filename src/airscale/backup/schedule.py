"""Backups on a schedule: a supervised component (`backup`) of the cluster, like the db-cleaner.

When it runs is `airscale.runtime.periodic`'s rule (the first backup `min(every, 10 min)` after
the component starts, then every `every`, again after `min(every, 15 min)` after a failure: a
database that was briefly down should not leave the cluster without a backup for another
period). Each run takes `take.take_backup`, deletes archives past `backup.keep` and records the
outcome in `<data_dir>/state/backup.json`, which the exporter reads for
`airscale_backup_last_success_timestamp_seconds` (and the `BackupTooOld` alert). Retention
(`to_delete`, pure) deletes only this cluster's archives by their name (`take.archive_name`),
oldest first, and only after a good backup: a run of failures never deletes the last good archives.
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

BACKUP = "backup"

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
    periodic.write_json_atomic(
        path, {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(state).items()})


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
    if load_state(path).since is None:
        save_state(path, State(since=clock()))
    log.info("a backup every %g h into %s, keeping %d; state in %s", every_s / 3600, spec.backup_path,
             spec.backup.keep, path)

    def last() -> tuple[datetime | None, bool]:
        state = load_state(path)
        return state.last_start, state.last_ok

    def attempt(begin: datetime) -> None:
        r = take_backup(spec, layout.secrets_file, progress=log.info, now=lambda: begin)
        gone = prune(spec.backup_path, spec.cluster.name, spec.backup.keep)
        detail = f"{r.size / 1e6:.1f} MB in {r.seconds:.1f}s" + (f"; deleted {', '.join(gone)}" if gone else "")
        log.info("backup done: %s: %s", r.path, detail)
        state = load_state(path)
        save_state(path, State(state.since or begin, begin, True, clock(), str(r.path), detail))

    def failed(begin: datetime, e: Exception) -> None:
        state = load_state(path)
        save_state(path, State(state.since or begin, begin, False, state.last_ok_at, state.archive,
                               f"{type(e).__name__}: {e}"[:500]))

    periodic.run_every("backup", every_s, last, attempt, failed, clock, log)


def main(argv: list[str] | None = None) -> int:
    from airscale.runtime.daemon import spec_daemon

    return spec_daemon(__doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    sys.exit(main())
