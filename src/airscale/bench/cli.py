"""`airscale bench`: stock Airflow settings against airscale's plan, same machine, same run."""

from __future__ import annotations

import shlex
import shutil
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from airscale.bench.scenarios import FULL, QUICK
from airscale.spec.cli_options import OldOutDirOption, out_dir

out = Console()
err = Console(stderr=True)


def bench_command(
    quick: bool = typer.Option(False, "--quick", help="Tiny scenarios (chain of 5, fan-out of 10), one round: "
                               "checks the machinery, the figures mean little."),
    rounds: int = typer.Option(None, "--rounds", min=1, help="Rounds of every scenario on both clusters "
                               "(default 2, --quick 1)."),
    report_dir: Path = typer.Option(None, "--out-dir", "-d", help="Where the report and plots go "
                                    "(default: bench-results)."),
    old_report_dir: Path = OldOutDirOption,
    root: Path = typer.Option(Path("/tmp/airscale-bench"), "--root",
                              help="Data dirs of the two bench clusters and the generated DAG files "
                              "(outside /root: PostgreSQL runs as postgres). Removed afterwards."),
    stock_port: int = typer.Option(30800, help="base_port of the stock cluster."),
    tuned_port: int = typer.Option(30900, help="base_port of the tuned cluster."),
    concurrency: int = typer.Option(8, help="Slots of the one Celery worker of each cluster."),
    idle_seconds: float = typer.Option(20.0, help="Seconds over which a quiet scheduler's CPU is measured."),
    latency_goal: float = typer.Option(None, "--latency-goal", min=0.05,
                                       help="latency_goal_seconds of the tuned cluster's workload profile "
                                       "(default 0.25: ~9 % of a core while quiet)."),
    parse_files: str = typer.Option(None, "--parse-files",
                                    help="Time one dag-processor pass over this many generated DAG files "
                                    "on each cluster, comma-separated (default 500,1000; --quick 5; "
                                    "'' skips it)."),
    folder_quiet: float = typer.Option(60.0, "--folder-quiet", min=0,
                                       help="After the largest parse pass, seconds over which the dag-processor's "
                                       "CPU is measured with no file changing, before an edit is timed "
                                       "(0 skips it; --quick 5)."),
    density: bool = typer.Option(True, "--density/--no-density",
                                 help="Measure each worker's memory with every slot running a sleeping task."),
    profile: bool = typer.Option(True, "--profile/--no-profile",
                                 help="Play the 500-DAG / 50,000-tasks-a-day profile compressed in time "
                                 "on each cluster (--quick: 5 DAGs for 10 s)."),
    profile_compression: float = typer.Option(6.0, min=0.1, help="How many times faster than real time "
                                              "the profile's day is played (6: 3.5 tasks/s)."),
    profile_window: float = typer.Option(180.0, min=5, help="Seconds during which profile runs are triggered."),
    many_first: str = typer.Option("stock", "--many-first", help="Which cluster (stock or tuned) takes its "
                                   "turn at the parse passes and the profile first."),
) -> None:
    """Run latency (chain of 40) and throughput (fan-out of 200) workloads on a cluster with
    Airflow's stock settings and one with airscale's plan, alternating, and write a markdown
    report with plots.

    Also times a dag-processor pass over 500 and 1,000 DAG files and plays 500 DAGs / 50,000
    tasks a day compressed in time on each cluster, one cluster at a time.

    Example: airscale bench --out-dir bench-results
    """
    from airscale.bench.playback import run_bench
    from airscale.bench.profile import Profile
    from airscale.bench.report import summary, write_report
    from airscale.bench.specs import BENCH_PROFILE, BenchConfig

    report_dir = out_dir(report_dir, old_report_dir, Path("bench-results"))
    counts = parse_counts(parse_files if parse_files is not None else ("5" if quick else "500,1000"))
    load = None
    if profile:
        load = (Profile(dags=5, compression=3.0, window_s=10.0) if quick
                else Profile(compression=profile_compression, window_s=profile_window))

    cfg = BenchConfig(
        scenarios=QUICK if quick else FULL,
        rounds=rounds or (1 if quick else 2),
        root=root,
        ports={"stock": stock_port, "tuned": tuned_port},
        concurrency=concurrency,
        idle_seconds=min(idle_seconds, 5.0) if quick else idle_seconds,
        parse_files=counts,
        load=load,
        many_first=many_first,
        folder_quiet_s=min(folder_quiet, 5.0) if quick else folder_quiet,
        density=density,
    )
    if many_first not in ("stock", "tuned"):
        from airscale.errors import AirscaleError

        raise AirscaleError(f"--many-first {many_first!r} is not a cluster of the bench", "give stock or tuned")
    if latency_goal is not None:
        cfg.profile = BENCH_PROFILE.model_copy(update={"latency_goal_seconds": latency_goal})
    command = "airscale bench " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    t0 = time.monotonic()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=False) as bar:
        ids: dict[str, int] = {}

        def progress(msg: str) -> None:
            err.print(f"[dim]{time.monotonic() - t0:6.1f}s[/dim] {escape(msg)}")

        def on_poll(label: str, done: int, total: int) -> None:
            if label not in ids:
                ids[label] = bar.add_task(label, total=total)
            bar.update(ids[label], completed=done)

        result = run_bench(cfg, progress, on_poll)
    if root.exists() and not any(root.glob("*/postgres")):
        shutil.rmtree(root, ignore_errors=True)
    path = write_report(result, report_dir, command)
    summ = summary(result)
    for name, by_variant in summ.items():
        st, tu = by_variant["stock"], by_variant["tuned"]
        gap = f", gap p50 {st['gap_p50']:.2f} -> {tu['gap_p50']:.2f}s" if st["gap_p50"] == st["gap_p50"] else ""
        out.print(f"{name}: wall {st['wall_s']:.1f}s -> {tu['wall_s']:.1f}s, "
                  f"{st['throughput']:.2f} -> {tu['throughput']:.2f} tasks/s{gap}, "
                  f"CPU/task {st['cpu_per_task']:.2f} -> {tu['cpu_per_task']:.2f}s "
                  f"(succeeded {st['succeeded']}/{st['tasks']}, {tu['succeeded']}/{tu['tasks']})")
    out.print(f"idle scheduler: stock {result.idle_share['stock']:.1%}, tuned {result.idle_share['tuned']:.1%} of a core")
    for f in result.parses:
        out.print(f"parse {f.files} files on {f.variant}: pass {f.pass_s:.1f}s (cold {f.cold_s:.1f}s) with "
                  f"{f.processes} process(es), interval {f.interval_s:.0f}s: "
                  + ("within" if f.within_interval else "NOT within"))
    for d in result.density:
        out.print(f"memory on {d.variant}: {d.running} running tasks in {d.busy_mib:.0f} MiB of worker PSS: "
                  f"{d.tasks_per_gib:.1f} tasks per GiB")
    for f in result.folders:
        out.print(f"{f.files} unchanged files on {f.variant}: dag-processor {f.quiet_cpu_share:.1%} of a core; "
                  f"edit -> serialized {', '.join(f'{x:.1f}' for x in f.edit_s)} s, new file {f.new_file_s:.1f} s")
    for f in result.loads:
        out.print(f"profile on {f.variant}: offered {f.offered_rate:.2f} tasks/s, achieved {f.achieved_rate:.2f}, "
                  f"backlog at end {f.backlog_at_end}/{f.offered_tasks}, "
                  + ("kept up" if f.kept_up else "fell behind"))
    out.print(f"report: {path}", markup=False)
    failed = [r for r in result.runs if r.succeeded != r.tasks]
    # A profile that fell behind is a finding, not a failure; tasks that failed are.
    failed += [f for f in result.loads if f.failed]
    if failed:
        raise typer.Exit(1)


def parse_counts(text: str) -> tuple[int, ...]:
    """'500,1000' -> (500, 1000); '' -> ()."""
    try:
        counts = tuple(int(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError:
        counts = (-1,)
    if any(n < 1 for n in counts):
        from airscale.errors import AirscaleError

        raise AirscaleError(f"--parse-files {text!r} is not a list of positive numbers",
                            "give file counts separated by commas, e.g. --parse-files 500,1000")
    return counts
