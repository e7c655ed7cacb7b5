"""`airscale drill NAME|all`."""

from __future__ import annotations

import platform
import time
from dataclasses import asdict
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from airscale.errors import AirscaleError
from airscale.spec.cli_options import SpecOption, print_json

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def drill_command(
    name: str = typer.Argument(..., help="scheduler-kill, worker-kill, broker-restart, api-server-kill, "
                               "dag-processor-kill, database-outage, disk-full, db-failover, patroni-kill (these two "
                               "with ha.database); scheduler-hang, api-server-hang, worker-hang, "
                               "dag-processor-hang, triggerer-hang, redis-hang, postgres-hang; etcd-kill, etcd-hang, "
                               "dcs-hang (with ha.database); redis-kill (with ha.broker); "
                               "or all (the kill drills)."),
    spec: Path = SpecOption,
    runs: int = typer.Option(6, "--runs", min=1, max=200, help="DAG runs of the drill workload."),
    seconds: float = typer.Option(3.0, "--seconds", min=0.0, max=600.0, help="How long each task sleeps."),
    timeout: float = typer.Option(300.0, "--timeout", min=10.0, help="Seconds to watch after the fault."),
    report: Path = typer.Option(Path("drill-report.md"), "--report", help="Where `all` writes its report."),
    hang: float | None = typer.Option(None, "--hang", min=1.0, max=3600.0,
                                      help="Hang (SIGSTOP) instead of kill, for this many seconds, then SIGCONT: "
                                      "`drill scheduler-kill --hang 120` is `drill scheduler-hang --hang 120`."),
    outage: float = typer.Option(90.0, "--outage", min=1.0, max=3600.0,
                                 help="database-outage: seconds the database stays away; disk-full: "
                                 "seconds the disk stays full."),
    max_fill: float = typer.Option(4.0, "--max-fill", min=0.01, max=1024.0,
                                   help="disk-full: the most GiB it may write; a disk with more free is refused."),
    as_json: bool = typer.Option(False, "--json", help="Print the verdicts as JSON on stdout (progress stays "
                                 "on stderr)."),
) -> None:
    """Inject one failure into the running cluster while a workload runs, and judge: DAG runs
    and tasks lost or stuck, tasks hit by the fault, recovery time, restarts. Exit 1 if lost,
    stuck or failed.

    Example: airscale drill worker-kill --spec airscale.yaml
             airscale drill scheduler-kill --hang 120 --spec airscale.yaml
    """
    from airscale.assembly import open_cluster
    from airscale.drills.report import markdown
    from airscale.drills.runner import DrillConfig, run_drill, wait_healthy
    from airscale.drills.scenarios import HANG_OF, ORDER, SCENARIOS
    from airscale.drills.verdict import summary_lines
    from airscale.spec import load_spec

    if hang is not None and name in HANG_OF:
        name = HANG_OF[name]
    elif hang is not None and not name.endswith("-hang"):
        raise AirscaleError(f"--hang does not apply to {name!r}",
                            f"use it with one of: {', '.join(sorted(HANG_OF))}, or a *-hang drill")
    names = ORDER if name == "all" else [name]
    if name != "all" and name not in SCENARIOS:
        raise AirscaleError(f"no drill named {name!r}", f"choose one of: {', '.join(SCENARIOS)}, all")
    cluster = open_cluster(load_spec(spec))
    cfg = DrillConfig(runs=runs, seconds=seconds, timeout=timeout, outage_s=outage, full_s=outage,
                      max_fill_bytes=int(max_fill * 2**30),
                      **({"hang_s": hang} if hang is not None else {}))
    verdicts = []
    for n in names:
        if name == "all" and SCENARIOS[n].unsupported(cluster):
            err.print(f"skipping {n}: {SCENARIOS[n].unsupported(cluster)}", markup=False)
            continue
        if verdicts:
            # The next drill starts from a healthy cluster, not from the last one's aftermath.
            wait_healthy(cluster, 180)
        v = run_drill(cluster, n, cfg, progress=lambda m: err.print(f"[dim]{time.strftime('%T')}[/dim] {escape(m)}"))
        verdicts.append(v)
        if not as_json:
            out.print("\n".join(summary_lines(v)), highlight=False)
    if name == "all":
        s = cluster.spec
        context = (f"Cluster `{s.cluster.name}`: {s.schedulers.count} scheduler(s), "
                   + ", ".join(f"queue {q}: {c.min_workers} worker(s) x {c.concurrency}" for q, c in s.queues.items())
                   + f"; ha.task_heartbeat_timeout {s.ha.task_heartbeat_timeout}s, task_retries "
                   f"{s.ha.task_retries}, retry_delay {s.ha.retry_delay}s. Host: {platform.node()}, "
                   f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.")
        report.write_text(markdown(verdicts, f"airscale drill all --spec {spec} --runs {runs} --seconds {seconds:g}",
                                   context))
        if not as_json:
            out.print(f"report written to {report}", markup=False)
    if as_json:
        print_json({"passed": all(v.passed for v in verdicts), "verdicts": [asdict(v) for v in verdicts],
                    **({"report": str(report)} if name == "all" else {})})
    if not all(v.passed for v in verdicts):
        raise typer.Exit(1)
