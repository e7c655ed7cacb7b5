"""`airscale plan [WORKLOAD.yaml] [-s SPEC] [--explain]`: print the settings planned for a workload.

The workload is a profile file given as the positional argument, or, without one, the
profile `airscale up` would plan for the spec (`tuning.workload`, `tuning.workload_file`, or one
sized from its queues), so what `plan` prints is what `up` applies."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from airscale.spec.cli_options import JsonOption, SpecOption, print_json
from airscale.tuning.planner import Plan, plan
from airscale.spec.workload import load_profile

out = Console()


def plan_command(
    workload: Path = typer.Argument(None, help="Workload profile YAML (dags, tasks_per_day, "
                                    "peak_concurrent_tasks, typical_task_seconds, burstiness, ...); "
                                    "default: the profile of the spec's tuning section.", show_default=False),
    spec: Path = SpecOption,
    explain: bool = typer.Option(False, "--explain", help="Show the reason for every setting."),
    as_json: bool = JsonOption,
) -> None:
    """Plan Airflow, worker, pool, PostgreSQL and PgBouncer settings for a workload profile.
    Apply it with `tuning: {enabled: true, workload_file: WORKLOAD.yaml}` in the spec;
    the spec's airflow_config still wins over the plan.

    Example: airscale plan examples/workload.yaml --explain
             airscale plan -s airscale.yaml --json
    """
    if workload is not None:
        profile = load_profile(workload)
    else:
        from airscale.spec import load_spec
        from airscale.tuning.apply import profile_for

        profile = profile_for(load_spec(spec))
    p = plan(profile)
    if as_json:
        print_json(asdict(p))
        return
    render(p, explain)


def _name(s) -> str:
    return s.key if s.section in ("postgresql", "pgbouncer", "pool") else f"{s.section}.{s.key}"


def render(p: Plan, explain: bool) -> None:
    groups = [
        ("Airflow (airflow.cfg)", p.airflow),
        ("Pools", p.pools),
        ("PostgreSQL", p.postgres),
        ("PgBouncer", p.pgbouncer),
    ]
    if explain:
        # A reason is a sentence or three: a list reads better than a narrow table column.
        for title, settings in groups:
            out.print(f"[bold]{title}[/bold]")
            for s in settings:
                out.print(f"  [bold green]{_name(s)} = {s.value}[/bold green]  [dim]({'stock ' + str(s.stock) if s.stock is not None else 'unset in stock'})[/dim]")
                out.print(f"      {s.reason}", highlight=False)
            out.print()
        out.print("[bold]Celery queues[/bold] (put these in the spec's queues section)")
        for q in p.queues:
            out.print(f"  [bold green]{q.name}: concurrency {q.concurrency}, min_workers {q.min_workers}, "
                      f"max_workers {q.max_workers}[/bold green]")
            out.print(f"      {q.reason}", highlight=False)
    else:
        for title, settings in groups:
            t = Table(title=title, title_justify="left")
            t.add_column("setting", no_wrap=True)
            t.add_column("value", style="bold green")
            t.add_column("stock", style="dim")
            for s in settings:
                t.add_row(_name(s), str(s.value), str(s.stock))
            out.print(t)
        t = Table(title="Celery queues (put these in the spec's queues section)", title_justify="left")
        for col in ("queue", "concurrency", "min_workers", "max_workers"):
            t.add_column(col)
        for q in p.queues:
            t.add_row(q.name, str(q.concurrency), str(q.min_workers), str(q.max_workers))
        out.print(t)
    for n in p.notes:
        out.print(f"[yellow]note:[/yellow] {escape(n)}")
    if not explain:
        out.print("[dim]--explain shows the reason for each setting[/dim]")
