"""`airscale soak`: a cluster under the compressed 50k-tasks-a-day profile for a while, with
faults injected at random times from a seed, and a report of what it showed."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

out = Console()
err = Console(stderr=True)


def soak_command(
    minutes: float = typer.Option(60.0, "--minutes", min=1.0, help="How long the load runs (the issue's "
                                  "full soak: 60)."),
    seed: int = typer.Option(1, "--seed", help="Seed of the fault schedule: the same seed, the same faults "
                             "at the same times."),
    load: float = typer.Option(4.0, "--load", min=0.1, help="How many times faster than real time the "
                               "500-DAG / 50,000-tasks-a-day profile is played (4: 2.3 tasks/s)."),
    profile: str = typer.Option("default", "--profile", help="default (the scale profile's defaults: two "
                                "api-servers behind HAProxy, 2 schedulers, 2 workers) or ha (plus PostgreSQL "
                                "primary + standby and Redis with Sentinels)."),
    dags: int = typer.Option(1000, "--dags", min=1, help="DAG files: the profile's 500 active DAGs, the rest "
                             "paused (parsed, never run)."),
    warmup: float = typer.Option(None, "--warmup", min=0.0, help="Minutes without faults first (default: "
                                 "until every DAG of the load has been triggered once, plus a minute; 10 % of the "
                                 "soak at least, a third at most); memory growth is measured from its end."),
    mean_gap: float = typer.Option(None, "--mean-gap", min=5.0, help="Mean seconds between faults (default: "
                                   "each kind about twice)."),
    root: Path = typer.Option(Path("/tmp/airscale-soak"), "--root", help="The soak cluster's data and DAG "
                              "files (outside /root: PostgreSQL runs as postgres)."),
    base_port: int = typer.Option(31000, "--base-port", help="base_port of the soak cluster."),
    report_dir: Path = typer.Option(Path("soak-results"), "--out-dir", "-d", help="Where the report goes."),
    keep: bool = typer.Option(False, "--keep", help="Leave the cluster running afterwards."),
    as_json: bool = typer.Option(False, "--json", help="Print the verdict as JSON."),
) -> None:
    """Soak a cluster: the compressed profile's load for --minutes, a fault at random times from
    --seed (a scheduler, a worker in the middle of tasks, an api-server, the dag-processor, the
    triggerer, Redis, and with --profile ha the PostgreSQL primary), a prober asking the REST
    API and the Execution API every second, and memory sampled every 30 s. Writes a markdown
    report with plots; exit 1 when a property of the verdict fails.

    Example: airscale soak --minutes 20 --seed 7 --load 4 --out-dir soak-results
    """
    import json

    from airscale.soak.report import write_report
    from airscale.soak.runner import SoakConfig, run_soak

    cfg = SoakConfig(minutes=minutes, seed=seed, load=load, profile=profile, dags=dags, root=root,
                     base_port=base_port, warmup_minutes=warmup, mean_gap_s=mean_gap, keep=keep)
    t0 = time.monotonic()

    def progress(msg: str) -> None:
        err.print(f"[dim]{time.monotonic() - t0:7.1f}s[/dim] {escape(msg)}")

    command = "airscale soak " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    result = run_soak(cfg, progress)
    v = result.judge()
    path = write_report(result, v, report_dir, command)
    if as_json:
        out.print_json(json.dumps({"passed": v.passed, "report": str(path),
                                   "checks": [c.__dict__ for c in v.checks]}))
    else:
        for c in v.checks:
            out.print(f"{'pass' if c.passed else 'FAIL'}  {c.name}: {c.detail}", markup=False)
        out.print(f"soak: {'PASS' if v.passed else 'FAIL'}; report: {path}", markup=False)
    if not v.passed:
        raise typer.Exit(1)
