"""`airscale db clean`: apply the spec's retention with `airflow db clean`, then VACUUM.

`airflow db clean` deletes rows older than the cut-off from the metadata tables (task
instances, DAG runs, logs, jobs, XComs, ...); without --skip-archive it first copies them
into _airflow_deleted__* tables, which would keep the space it is meant to free. Deleted
rows only become reusable space after VACUUM; ANALYZE refreshes the planner's statistics
after a large delete.

Its default table list includes `dag`, aged by `last_parsed_time`: the DAG catalog, not
history. A row's age there is the time since its file was last parsed, which the planner makes
hours long (its re-parse interval of unchanged files), so a short retention would delete live
DAGs, with their versions and serialized forms, until their files happen to be parsed again.
Airflow marks the DAGs of deleted files stale itself. So the clean names its tables: Airflow's
list, read from the installed Airflow, less the catalog.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from airscale.errors import AirscaleError
from airscale.runtime.components import airflow_bin

# Tables of `airflow db clean` that hold what exists rather than what happened.
KEPT_TABLES = frozenset({"dag"})
# Prints the installed Airflow's cleanable tables (those of its FAB session backend included).
_LIST_TABLES = "from airflow.utils.db_cleanup import config_dict; print(' '.join(config_dict))"


def history_tables(cleanable: list[str]) -> list[str]:
    """Of the tables `airflow db clean` can clean, those it may clean here (pure)."""
    return [t for t in cleanable if t not in KEPT_TABLES]


def cleanable_tables(env: dict[str, str]) -> list[str]:
    """The tables the installed Airflow's `db clean` knows, read with the cluster's config."""
    proc = subprocess.run([sys.executable, "-c", _LIST_TABLES], env=env,  # the interpreter of airflow_bin()
                          capture_output=True, text=True, check=False)
    names = proc.stdout.split()
    if proc.returncode != 0 or not names:
        tail = (proc.stderr or proc.stdout).strip()[-800:]
        raise AirscaleError(f"could not read the tables of airflow db clean (exit {proc.returncode}): {tail}",
                            "check that Airflow runs in this environment: airflow version")
    return names


def cutoff(now: datetime, retention_days: int) -> datetime:
    return now - timedelta(days=retention_days)


def clean_command(before: datetime, tables: list[str], dry_run: bool = False) -> list[str]:
    cmd = [airflow_bin(), "db", "clean", "--clean-before-timestamp", before.isoformat(),
           "--tables", ",".join(history_tables(tables)), "--yes", "--skip-archive"]
    if dry_run:
        cmd.append("--dry-run")
    return cmd


@dataclass
class CleanResult:
    before: datetime
    rows_before: int
    rows_after: int
    clean_seconds: float
    vacuum_seconds: float
    output: str


def _task_rows(conn) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT (SELECT count(*) FROM task_instance) + (SELECT count(*) FROM dag_run)")
        return int(cur.fetchone()[0])


def clean(cluster, retention_days: int, now: datetime | None = None, dry_run: bool = False) -> CleanResult:
    from airscale.runtime.health import db_connect

    before = cutoff(now or datetime.now(timezone.utc), retention_days)
    secrets = cluster.secrets()
    conn = db_connect(cluster.spec, secrets, timeout=5)
    conn.autocommit = True  # VACUUM cannot run inside a transaction
    try:
        rows_before = _task_rows(conn)
        env = cluster.airflow_env()
        tables = cleanable_tables(env)  # before the clock: clean_seconds is `airflow db clean`'s
        t0 = time.monotonic()
        proc = subprocess.run(clean_command(before, tables, dry_run), env=env,
                              capture_output=True, text=True, check=False)
        clean_s = time.monotonic() - t0
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip()[-800:]
            raise AirscaleError(f"airflow db clean failed (exit {proc.returncode}): {tail}",
                                "check that the cluster's database is up: airscale status")
        t0 = time.monotonic()
        if not dry_run:
            with conn.cursor() as cur:
                cur.execute("VACUUM (ANALYZE)")
        vacuum_s = time.monotonic() - t0
        rows_after = _task_rows(conn)
    finally:
        conn.close()
    return CleanResult(before, rows_before, rows_after, clean_s, vacuum_s, proc.stdout + proc.stderr)
