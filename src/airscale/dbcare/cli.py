"""`airscale db advise` and `airscale db clean`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from airscale.dbcare import advise as adv
from airscale.dbcare import inspect
from airscale.errors import AirscaleError
from airscale.spec.cli_options import JsonOption, SpecOption, print_json

app = typer.Typer(help="Care for the metadata database: indexes, bloat, sizes, retention.\n\n"
                  "Example: airscale db advise -s airscale.yaml", no_args_is_help=True)
out = Console()
err = Console(stderr=True)


def _cluster(spec: Path):
    from airscale.runtime.cluster import Cluster
    from airscale.spec import load_spec

    return Cluster(load_spec(spec), ())  # only the database and Airflow's CLI environment


def _connect(cluster):
    from airscale.runtime.health import db_connect

    try:
        return db_connect(cluster.spec, cluster.secrets(), timeout=5)
    except AirscaleError:
        raise
    except Exception as e:  # psycopg2.OperationalError: database down
        raise AirscaleError(f"cannot reach the metadata database: {str(e).strip().splitlines()[0]}",
                            "bring the cluster up: airscale up") from None


def run_advice(cluster) -> tuple[list[adv.Advice], list[adv.TableStats]]:
    conn = _connect(cluster)
    try:
        indexes = inspect.index_columns(conn)
        tables = inspect.table_stats(conn)
    finally:
        conn.close()
    return adv.advise(indexes, tables, cluster.spec.tuning.db_retention_days), tables


def apply_fixes(cluster, advice: list[adv.Advice]) -> list[str]:
    """Create missing hot indexes (CONCURRENTLY: tasks keep running meanwhile)."""
    done = []
    conn = _connect(cluster)
    conn.autocommit = True  # CREATE INDEX CONCURRENTLY cannot run in a transaction
    try:
        with conn.cursor() as cur:
            for a in advice:
                if a.kind == "missing-index" and a.action:
                    cur.execute(a.action)
                    done.append(a.action)
    finally:
        conn.close()
    return done


@app.command("advise")
def advise_command(
    spec: Path = SpecOption,
    fix: bool = typer.Option(False, "--fix", help="Create missing indexes of hot queries now."),
    top: int = typer.Option(10, help="How many of the largest tables to list."),
    as_json: bool = JsonOption,
) -> None:
    """Check the metadata database: indexes for hot queries, dead-row bloat, table sizes.

    Example: airscale db advise --spec examples/airscale.yaml
    """
    cluster = _cluster(spec)
    advice, tables = run_advice(cluster)
    if as_json:
        fixed = apply_fixes(cluster, advice) if fix else []
        largest = sorted(tables, key=lambda x: -x.total_bytes)[:top]
        print_json({"advice": [asdict(a) for a in advice], "largest_tables": [asdict(x) for x in largest],
                    "tables": len(tables), "fixed": fixed})
        return
    t = Table(title="advice", title_justify="left")
    for col in ("kind", "table", "finding", "action"):
        t.add_column(col)
    colours = {"ok": "green", "missing-index": "red", "bloat": "yellow", "large-table": "yellow"}
    for a in advice:
        c = colours.get(a.kind, "white")
        t.add_row(f"[{c}]{a.kind}[/{c}]", a.table, a.detail, a.action or "-")
    out.print(t)
    s = Table(title=f"largest tables (of {len(tables)})", title_justify="left")
    for col in ("table", "size", "live rows", "dead rows", "last vacuum"):
        s.add_column(col)
    for ts in sorted(tables, key=lambda x: -x.total_bytes)[:top]:
        s.add_row(ts.table, _size(ts.total_bytes), str(ts.live_rows), str(ts.dead_rows), ts.last_vacuum or "never")
    out.print(s)
    if fix:
        for ddl in apply_fixes(cluster, advice):
            out.print(f"[green]done:[/green] {ddl}")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


@app.command("clean")
def clean_command(
    spec: Path = SpecOption,
    retention_days: int = typer.Option(None, "--retention-days", min=0,
                                       help="Override the spec's tuning.db_retention_days."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be deleted; change nothing."),
    as_json: bool = JsonOption,
) -> None:
    """Delete metadata older than the retention (airflow db clean --skip-archive), then
    VACUUM ANALYZE so the space is reused.

    Example: airscale db clean --spec examples/airscale.yaml --retention-days 30
    """
    from airscale.dbcare.clean import clean

    cluster = _cluster(spec)
    days = cluster.spec.tuning.db_retention_days if retention_days is None else retention_days
    with err.status(f"cleaning rows older than {days} days"):
        r = clean(cluster, days, dry_run=dry_run)
    if as_json:
        print_json({**asdict(r), "retention_days": days, "dry_run": dry_run})
        return
    out.print(f"cut-off {r.before.isoformat(timespec='seconds')}: task instances + DAG runs "
              f"{r.rows_before} -> {r.rows_after}; airflow db clean {r.clean_seconds:.1f}s, "
              f"VACUUM ANALYZE {r.vacuum_seconds:.1f}s" + (" (dry run)" if dry_run else ""))
