"""What to do about the metadata database, decided from catalog rows (pure, no I/O).

Known hot queries that lacked an index in some Airflow 3 releases (the migrations of 3.1.8
and 3.3.0 add them; a database restored from an older dump, or migrated by hand, may still
lack them): each is checked by its leading columns, not its name, so an equivalent index
created under another name counts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HotIndex:
    table: str
    columns: tuple[str, ...]
    name: str  # the name Airflow's migration gives it
    ddl: str
    why: str


HOT_INDEXES: tuple[HotIndex, ...] = (
    HotIndex(
        "task_reschedule", ("ti_id",), "idx_task_reschedule_ti_id_id_desc",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_task_reschedule_ti_id_id_desc "
        "ON task_reschedule (ti_id, id DESC)",
        "every sensor poke in reschedule mode looks up its reschedules by ti_id (apache/airflow #60895)",
    ),
    HotIndex(
        "task_instance", ("dag_version_id",), "ti_dag_version_id",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS ti_dag_version_id ON task_instance (dag_version_id)",
        "deleting or looking up DAG versions scans task_instance without it (apache/airflow #61894)",
    ),
    HotIndex(
        "dag_run", ("created_dag_version_id",), "idx_dag_run_created_dag_version_id",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_dag_run_created_dag_version_id "
        "ON dag_run (created_dag_version_id)",
        "the same DAG-version lookups on dag_run (added with ti_dag_version_id in 3.3.0)",
    ),
)

BLOAT_MIN_DEAD_ROWS = 1_000
BLOAT_SHARE = 0.2  # PostgreSQL's own autovacuum_vacuum_scale_factor default
LARGE_TABLE_BYTES = 1 << 30


@dataclass(frozen=True)
class TableStats:
    table: str
    live_rows: int
    dead_rows: int
    total_bytes: int
    last_vacuum: str | None = None  # latest of manual and auto vacuum, ISO text


@dataclass(frozen=True)
class Advice:
    kind: str  # missing-index | bloat | large-table | ok
    table: str
    detail: str
    action: str | None  # SQL or command that fixes it, None when nothing to do


def covered(wanted: tuple[str, ...], indexes: list[tuple[str, ...]]) -> bool:
    """An index serves a lookup on `wanted` when `wanted` are its leading columns."""
    return any(tuple(cols[: len(wanted)]) == wanted for cols in indexes)


def advise(
    indexes: dict[str, list[tuple[str, ...]]], tables: list[TableStats], retention_days: int
) -> list[Advice]:
    """`indexes`: table -> the column lists of its indexes; `tables`: per-table statistics."""
    out: list[Advice] = []
    for h in HOT_INDEXES:
        if h.table not in indexes:
            continue  # table not in this schema version
        if not covered(h.columns, indexes[h.table]):
            out.append(Advice("missing-index", h.table,
                              f"no index on {h.table}({', '.join(h.columns)}): {h.why}", h.ddl + ";"))
        else:
            out.append(Advice("ok", h.table, f"index on {h.table}({', '.join(h.columns)}) present", None))
    for t in sorted(tables, key=lambda t: -t.total_bytes):
        rows = t.live_rows + t.dead_rows
        share = t.dead_rows / rows if rows else 0.0
        if t.dead_rows >= BLOAT_MIN_DEAD_ROWS and share >= BLOAT_SHARE:
            out.append(Advice(
                "bloat", t.table,
                f"{t.dead_rows} dead rows ({share:.0%} of the table), last vacuum {t.last_vacuum or 'never'}",
                f"VACUUM (ANALYZE) {t.table};",
            ))
        if t.total_bytes >= LARGE_TABLE_BYTES:
            out.append(Advice(
                "large-table", t.table,
                f"{t.total_bytes / (1 << 30):.1f} GiB with indexes",
                f"airscale db clean (removes rows older than {retention_days} days)",
            ))
    return out
