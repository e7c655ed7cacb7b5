"""`airscale bench`: stock Airflow settings against airscale's plan, same machine, same run."""

from __future__ import annotations

import shlex
import shutil
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from airscale.bench.scenarios import FULL, QUICK

out = Console()
err = Console(stderr=True)


def bench_command(
    quick: bool = typer.Option(False, "--quick", help="Tiny scenarios (chain of 5, fan-out of 10), one round: "
                               "checks the machinery, the figures mean little."),
    rounds: int = typer.Option(None, "--rounds", min=1, help="Rounds of every scenario on both clusters "
                               "(default 2, --quick 1)."),
    out_dir: Path = typer.Option(Path("bench-results"), "--out", help="Where the report and plots go."),
    root: Path = typer.Option(Path("/tmp/airscale-bench"), "--root",
                              help="Data dirs of the two bench clusters and the generated DAG files "
                              "(outside /root: PostgreSQL runs as postgres). Removed afterwards."),
    stock_port: int = typer.Option(29800, help="base_port of the stock cluster."),
    tuned_port: int = typer.Option(29900, help="base_port of the tuned cluster."),
    concurrency: int = typer.Option(8, help="Slots of the one Celery worker of each cluster."),
    idle_seconds: float = typer.Option(20.0, help="Seconds over which a quiet scheduler's CPU is measured."),
    latency_goal: float = typer.Option(None, "--latency-goal", min=0.05,
                                       help="latency_goal_seconds of the tuned cluster's workload profile "
                                       "(default 0.25: ~9 % of a core while quiet)."),
) -> None:
    """Run latency (chain of 40) and throughput (fan-out of 200) workloads on a cluster with
    Airflow's stock settings and one with airscale's plan, alternating, and write a markdown
    report with plots.

    Example: airscale bench --out bench-results
    """
    from airscale.bench.report import summary, write_report
    from airscale.bench.runner import BENCH_PROFILE, BenchConfig, run_bench

    cfg = BenchConfig(
        scenarios=QUICK if quick else FULL,
        rounds=rounds or (1 if quick else 2),
        root=root,
        ports={"stock": stock_port, "tuned": tuned_port},
        concurrency=concurrency,
        idle_seconds=min(idle_seconds, 5.0) if quick else idle_seconds,
    )
    if latency_goal is not None:
        cfg.profile = BENCH_PROFILE.model_copy(update={"latency_goal_seconds": latency_goal})
    command = "airscale bench " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    t0 = time.monotonic()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=False) as bar:
        ids: dict[str, int] = {}

        def progress(msg: str) -> None:
            err.print(f"[dim]{time.monotonic() - t0:6.1f}s[/dim] {msg}")

        def on_poll(label: str, done: int, total: int) -> None:
            if label not in ids:
                ids[label] = bar.add_task(label, total=total)
            bar.update(ids[label], completed=done)

        result = run_bench(cfg, progress, on_poll)
    if root.exists() and not any(root.glob("*/postgres")):
        shutil.rmtree(root, ignore_errors=True)
    path = write_report(result, out_dir, command)
    summ = summary(result)
    for name, by_variant in summ.items():
        st, tu = by_variant["stock"], by_variant["tuned"]
        gap = f", gap p50 {st['gap_p50']:.2f} -> {tu['gap_p50']:.2f}s" if st["gap_p50"] == st["gap_p50"] else ""
        out.print(f"{name}: wall {st['wall_s']:.1f}s -> {tu['wall_s']:.1f}s, "
                  f"{st['throughput']:.2f} -> {tu['throughput']:.2f} tasks/s{gap}, "
                  f"CPU/task {st['cpu_per_task']:.2f} -> {tu['cpu_per_task']:.2f}s "
                  f"(succeeded {st['succeeded']}/{st['tasks']}, {tu['succeeded']}/{tu['tasks']})")
    out.print(f"idle scheduler: stock {result.idle_share['stock']:.1%}, tuned {result.idle_share['tuned']:.1%} of a core")
    out.print(f"report: {path}")
    failed = [r for r in result.runs if r.succeeded != r.tasks]
    if failed:
        raise typer.Exit(1)
