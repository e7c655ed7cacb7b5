"""`airscale plan [WORKLOAD.yaml] [-s SPEC] [--explain]`: print the settings planned for a workload.

The workload is a profile file given as the positional argument, or, without one, the
profile `airscale up` would plan for the spec (`tuning.workload`, `tuning.workload_file`, or one
sized from its queues), so what `plan` prints is what `up` applies.

With a spec, the plan also shows the autoscaling settings the spec leaves empty, derived from
the start-ups and drains its autoscaler measured (tuning/autoscaling.py), and checks that the
queues fit the machine's memory (exit 2 when they do not)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from airscale.spec import Spec
from airscale.spec.cli_options import DEFAULT_SPEC, JsonOption, SpecOption, print_json
from airscale.spec.workload import load_profile
from airscale.tuning.autoscaling import (
    MEMORY_FILE,
    STARTS_FILE,
    STOPS_FILE,
    AutoscalingPlan,
    Measured,
    MemoryFigures,
    MemoryFit,
    check_memory,
    derive,
    measured_from,
)
from airscale.tuning.planner import Plan, plan

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
             airscale plan -s airscale.yaml --json   (autoscaling settings and their figures too)
    """
    from airscale.spec import load_spec
    from airscale.tuning.apply import profile_for

    # A workload file alone plans without a spec; the default spec is read only if it is there.
    the_spec = None if workload is not None and spec == DEFAULT_SPEC and not spec.exists() else load_spec(spec)
    fit = check_spec_memory(the_spec) if the_spec is not None else None
    profile = load_profile(workload) if workload is not None else profile_for(the_spec)
    p = plan(profile)
    auto = derive(the_spec, measured(the_spec)) if the_spec is not None and the_spec.uses_celery else None
    if as_json:
        print_json({**asdict(p), "autoscaling": asdict(auto) if auto else None,
                    "memory": memory_json(fit) if fit else None})
        return
    render(p, explain)
    if auto is not None:
        render_autoscaling(auto)
    if fit is not None:
        out.print(f"[bold]Memory[/bold]: {memory_line(fit)}", highlight=False)


def check_spec_memory(spec: Spec) -> MemoryFit:
    """`check_memory` with the best figures known: refitted from this cluster's workers when its
    autoscaler sampled them, else the recorded ones (exit 2 when the queues cannot fit)."""
    try:
        figures = measured(spec).memory
    except OSError:  # a data dir not readable here: the recorded figures
        figures = MemoryFigures()
    return check_memory(spec, total_memory_mib(), figures)


def memory_json(fit: MemoryFit) -> dict:
    return {**asdict(fit), "need_mib": round(fit.need_mib), "budget_mib": round(fit.budget_mib)}


def memory_line(fit: MemoryFit) -> str:
    queues = ", ".join(f"{q.name} {q.workers} x {q.concurrency} slots {q.mib / 1024:.1f} GiB" for q in fit.queues)
    return (f"{fit.need_mib / 1024:.1f} GiB with every slot busy ({queues}; cluster processes "
            f"{fit.cluster_mib / 1024:.1f} GiB) of {fit.budget_mib / 1024:.1f} GiB "
            f"({fit.total_mib / 1024:.1f} GiB less {fit.headroom:.0%} headroom)")


def total_memory_mib() -> float:
    import psutil

    return psutil.virtual_memory().total / 1024 / 1024


def _jsonl(path: Path) -> list[dict]:
    out = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a crash mid-write
    return out


def measured(spec: Spec) -> Measured:
    """What the spec's autoscaler recorded under its data dir (nothing before its first start)."""
    state = spec.data_path / "state"
    return measured_from(_jsonl(state / STARTS_FILE), _jsonl(state / STOPS_FILE), total_memory_mib(),
                         _jsonl(state / MEMORY_FILE))


def render_autoscaling(auto: AutoscalingPlan) -> None:
    out.print(f"[bold]Autoscaling[/bold] ({'on' if auto.enabled else 'off'}; "
              "empty spec fields are derived from what this machine measured)")
    for s in auto.settings:
        out.print(f"  [bold green]autoscaling.{s.key} = {s.value:g}[/bold green]  [dim]({s.source})[/dim]")
        out.print(f"      {escape(s.reason)}", highlight=False)
    m = auto.memory
    out.print(f"  memory: a worker {m.worker_parent_mib:g} MiB + {m.idle_slot_mib:g} MiB an idle slot "
              f"+ {m.running_task_mib:g} MiB a running task  [dim]({escape(m.source)})[/dim]", highlight=False)


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
