"""`airscale alerts ...`: read what the bundled alert receiver got."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from airscale.errors import AirscaleError
from airscale.spec.cli_options import SpecOption, print_json

alerts_app = typer.Typer(help="Alerts that reached the bundled local receiver.\n\n"
                         "Example: airscale alerts tail -s airscale.yaml", no_args_is_help=True)
_out = Console()


def format_alert(line: str) -> str:
    """One JSONL record of the receiver -> one readable line (pure)."""
    a = json.loads(line)
    when = time.strftime("%H:%M:%S", time.localtime(a.get("received_at", 0)))
    status = (a.get("status") or "?").upper()
    colour = {"FIRING": "red", "RESOLVED": "green"}.get(status, "yellow")
    labels = a.get("labels", {})
    where = ", ".join(f"{k}={labels[k]}" for k in ("queue", "dag_id", "component", "job") if k in labels)
    summary = a.get("annotations", {}).get("summary", "")
    return (f"{when} [{colour}]{status:8}[/{colour}] [bold]{a.get('alertname')}[/bold] "
            f"({a.get('severity')}){' ' + where if where else ''}: {summary}")


@alerts_app.command("tail")
def tail(
    spec: Path = SpecOption,
    follow: bool = typer.Option(True, "--follow/--no-follow", help="Keep printing alerts as they arrive."),
    last: int = typer.Option(20, "--last", "-n", help="How many earlier alerts to show first."),
    as_json: bool = typer.Option(False, "--json", help="Print each alert as the receiver stored it: "
                                 "one JSON object per line."),
) -> None:
    """Print alerts as Alertmanager delivers them to the bundled receiver.

    Example: airscale alerts tail --spec examples/airscale.yaml --last 50
    """
    from airscale.observe.settings import monitoring_active
    from airscale.observe.stack import MonitoringLayout
    from airscale.spec import load_spec

    s = load_spec(spec)
    if not monitoring_active(s) or not s.monitoring.local_receiver:
        raise AirscaleError(
            "the bundled alert receiver is off for this cluster",
            "set monitoring.enabled: true and monitoring.local_receiver: true in the spec, then airscale up",
        )
    path = MonitoringLayout.of(s.data_path).alerts_jsonl
    if not path.parent.exists():
        raise AirscaleError(f"no monitoring data at {path.parent}", "bring the cluster up: airscale up --spec FILE")
    def show(line: str) -> None:
        if as_json:
            print(json.dumps(json.loads(line)), flush=True)
        else:
            _out.print(format_alert(line), highlight=False, markup=False)

    pos = 0
    if path.exists():
        lines = path.read_text().splitlines()
        for line in lines[-last:] if last > 0 else []:
            show(line)
        pos = path.stat().st_size
    if not follow:
        return
    if not as_json:
        _out.print(f"[dim]waiting for alerts ({escape(str(path))}); Ctrl-C to stop[/dim]")
    buf = ""
    while True:
        if path.exists() and path.stat().st_size > pos:
            with open(path) as f:
                f.seek(pos)
                buf += f.read()
                pos = f.tell()
            *complete, buf = buf.split("\n")
            for line in complete:
                if line.strip():
                    show(line)
        time.sleep(0.5)


dashboards_app = typer.Typer(help="Grafana dashboards generated from the spec.\n\n"
                             "Example: airscale dashboards export ./grafana -s airscale.yaml",
                             no_args_is_help=True)


@dashboards_app.command("export")
def export_dashboards(
    directory: Path = typer.Argument(..., help="Folder to write dashboards/ and provisioning/ into."),
    spec: Path = SpecOption,
) -> None:
    """Write the Grafana dashboards (JSON) and provisioning files for this cluster's Prometheus.

    Point Grafana's provisioning path at DIR/provisioning (or copy the files into
    /etc/grafana/provisioning); the dashboard provider reads DIR/dashboards.

    Example: airscale dashboards export ./grafana --spec examples/airscale.yaml
    """
    from airscale.observe.dashboards import export
    from airscale.spec import load_spec

    s = load_spec(spec)
    if directory.exists() and not directory.is_dir():
        raise AirscaleError(f"{directory} exists and is not a folder", "choose a folder path")
    for p in export(s, directory):
        _out.print(f"wrote {p}", markup=False)


def exporter_command(
    spec: Path = SpecOption,
    listen: str = typer.Option("0.0.0.0", "--listen", help="Address to serve metrics and receive statsd on."),
    port: int = typer.Option(None, "--port", help="Metrics port; default: the exporter port of the spec's block."),
    statsd_port: int = typer.Option(None, "--statsd-port", help="statsd UDP port; default: the spec's statsd port."),
) -> None:
    """Run the airscale exporter in the foreground, the way its Kubernetes Deployment does.

    Reads the metadata database URL from AIRSCALE_DATABASE_URL (the rendered Deployment sets it
    from the metadata Secret, so it is on no command line). A local cluster runs its own
    exporter under the supervisor instead (`airscale up`).

    Example: AIRSCALE_DATABASE_URL=postgresql://... airscale exporter --spec /etc/airscale/airscale.yaml
    """
    import os

    from airscale.observe.exporter import in_cluster_config, libpq_url, serve
    from airscale.spec import load_spec

    s = load_spec(spec)
    url = os.environ.get("AIRSCALE_DATABASE_URL")
    if not url:
        raise AirscaleError("AIRSCALE_DATABASE_URL is not set, so the exporter cannot read the metadata database",
                            "set it to the metadata database URL (the rendered Deployment takes it from "
                            "the metadata Secret)")
    serve(in_cluster_config(s, listen, port, statsd_port), libpq_url(url))


def top_command(
    spec: Path = SpecOption,
    interval: float = typer.Option(2.0, "--interval", "-i", help="Seconds between refreshes."),
    once: bool = typer.Option(False, "--once", help="Print one frame and exit."),
    as_json: bool = typer.Option(False, "--json", help="Print the results of the view's Prometheus queries "
                                 "once, as JSON (implies --once)."),
) -> None:
    """Live view of queues, workers, throughput and latency, from the cluster's Prometheus.

    Example: airscale top --spec examples/airscale.yaml
    """
    from rich.live import Live

    from airscale.observe.settings import monitoring_active
    from airscale.observe.top import frame, query_all
    from airscale.spec import load_spec

    s = load_spec(spec)
    if not monitoring_active(s):
        raise AirscaleError("monitoring is off for this cluster, so there is no Prometheus to read",
                            "set monitoring.enabled: true in the spec and run airscale up")
    url = f"http://{s.client_host}:{s.ports.prometheus}"
    if as_json:
        print_json(query_all(url))
        return
    if once:
        _out.print(frame(url, s.cluster.name))
        return
    with Live(frame(url, s.cluster.name), console=_out, refresh_per_second=4, screen=False) as live:
        while True:
            time.sleep(max(0.5, interval))
            live.update(frame(url, s.cluster.name))
