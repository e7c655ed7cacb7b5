"""`airscale autoscale` and the autoscaling section of `airscale status`."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from airscale.autoscale import records
from airscale.errors import AirscaleError
from airscale.runtime.layout import Layout
from airscale.spec import Spec

AUTOSCALER = "autoscaler"


def run(spec: Spec, dry_run: bool, once: bool, console: Console, kubernetes: bool = False,
        metrics_port: int | None = None) -> None:
    """The foreground loop; refuses to run beside the cluster's own autoscaler (two loops would
    fight over the same workers). `kubernetes`: in the rendered Deployment, no local cluster.
    `metrics_port`: where its metrics are served (default: the spec's autoscaler port)."""
    from airscale.autoscale.loop import run_forever
    from airscale.runtime.supervisor import Supervisor

    if kubernetes:
        if not spec.uses_celery:
            raise AirscaleError("profile 'dev' has no Celery workers to scale",
                                "set cluster.profile: scale in the spec")
        from airscale.autoscale import in_cluster

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        scaler = run_forever(spec, dry_run=dry_run, once=once, metrics_port=not once, port=metrics_port,
                             scaler=in_cluster.build(spec, dry_run=dry_run))
        if once:
            console.print(summary_table(scaler.summary, "autoscaling decision (Kubernetes)"))
        return
    layout = Layout(spec.data_path)
    sup = Supervisor(layout)
    if not sup.is_running():
        raise AirscaleError(
            f"cluster {spec.cluster.name!r} is not running (nothing at {layout.root})",
            "start it first: airscale up --spec FILE",
        )
    if not spec.uses_celery:
        raise AirscaleError(
            "profile 'dev' has no Celery workers to scale",
            "set cluster.profile: scale in the spec",
        )
    if not dry_run and sup.infos().get(AUTOSCALER, {}).get("statename") == "RUNNING":
        raise AirscaleError(
            "the cluster's autoscaler already runs (autoscaling.enabled is true)",
            "stop it first (airscale stop autoscaler), or watch it with --dry-run",
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    scaler = run_forever(spec, dry_run=dry_run, once=once, metrics_port=not dry_run, port=metrics_port)
    if once:
        console.print(summary_table(scaler.summary, "autoscaling decision" + (" (dry run)" if dry_run else "")))
        if scaler.recent_errors:
            raise AirscaleError(f"the decision failed: {scaler.recent_errors[-1]}", "see the log above")


def status_table(layout: Layout, now: float | None = None) -> Table | None:
    """Desired vs actual workers per queue and the last decision, from the loop's state file."""
    state = records.read_state(layout)
    if not state:
        return None
    now = time.time() if now is None else now
    age = now - state.get("at", now)
    return summary_table(state.get("queues", {}), f"autoscaling (last decision {age:.0f}s ago)")


def summary_table(queues: dict[str, dict], title: str) -> Table:
    """One row per queue; the decision's sentence goes in the caption, where it can be long."""
    t = Table(title=title, caption_justify="left")
    for col in ("queue", "desired", "actual", "draining", "demand", "forecast", "last reason"):
        t.add_column(col)
    for q, s in sorted(queues.items()):
        colour = "green" if s["desired"] == s["actual"] else "yellow"
        t.add_row(
            q, str(s["desired"]), f"[{colour}]{s['actual']}[/{colour}]",
            ", ".join(s.get("draining", [])) or "0", str(s.get("demand", "-")), str(s.get("forecast", 0)),
            s["reason"],
        )
    t.caption = "\n".join(f"{q}: {s['message']}" for q, s in sorted(queues.items()))
    return t


def print_status(spec_path: Path, console: Console) -> None:
    from airscale.spec import load_spec

    spec = load_spec(spec_path)
    table = status_table(Layout(spec.data_path))
    if table is not None:
        console.print(table)
        errors = (records.read_state(Layout(spec.data_path)) or {}).get("recent_errors") or []
        if errors:
            console.print(f"[yellow]recent autoscaler errors:[/yellow] {escape(str(errors[-1]))}")
    elif spec.autoscaling.enabled:
        console.print("[dim]autoscaling: no decision yet (see airscale logs autoscaler)[/dim]")
