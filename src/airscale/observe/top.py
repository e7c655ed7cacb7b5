"""`airscale top`: a live terminal view of queues, workers, throughput and latency.

For the one-machine case where no Grafana runs. It reads the cluster's own Prometheus (rates
and percentiles need history, which the exporter alone does not keep). `QUERIES` is the whole
input; `build_view` turns query results into rich tables (pure, tested with canned results).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from rich.console import Group
from rich.table import Table

from airscale.errors import AirscaleError

QUERIES = {
    "queued": 'sum by (queue) (airscale_task_instances{state="queued"})',
    "running": 'sum by (queue) (airscale_task_instances{state="running"})',
    "oldest": "max by (queue) (airscale_oldest_queued_task_age_seconds)",
    "workers": "sum by (queue) (airscale_workers_running)",
    "workers_max": "max by (queue) (airscale_workers_max)",
    "finished": "sum by (state) (rate(airscale_task_finished_total[1m]))",
    "duration_p50": "histogram_quantile(0.5, sum by (le) (rate(airflow_task_duration_seconds_bucket[5m])))",
    "duration_p95": "histogram_quantile(0.95, sum by (le) (rate(airflow_task_duration_seconds_bucket[5m])))",
    "sched_p95": "histogram_quantile(0.95, sum by (le) (rate(airflow_task_scheduled_duration_seconds_bucket[5m])))",
    "heartbeats": "airscale_job_heartbeat_age_seconds",
    "down": "airscale_component_up == 0",
    "firing": 'ALERTS{alertstate="firing"}',
}

Results = dict[str, list[dict]]


@dataclass
class View:
    queues: Table
    throughput: Table
    components: Table
    problems: list[str] = field(default_factory=list)


def _by(results: Results, key: str, label: str) -> dict[str, float]:
    out = {}
    for r in results.get(key, []):
        try:
            out[r["metric"].get(label, "")] = float(r["value"][1])
        except (KeyError, ValueError):
            continue
    return out


def _scalar(results: Results, key: str) -> float | None:
    vals = [float(r["value"][1]) for r in results.get(key, [])]
    vals = [v for v in vals if not math.isnan(v)]
    return vals[0] if vals else None


def _secs(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.1f} s"


def build_view(results: Results) -> View:
    queued, running = _by(results, "queued", "queue"), _by(results, "running", "queue")
    oldest, workers = _by(results, "oldest", "queue"), _by(results, "workers", "queue")
    wmax = _by(results, "workers_max", "queue")
    q = Table(title="Queues", expand=True)
    for col in ("queue", "queued", "running", "oldest queued", "workers"):
        q.add_column(col, justify="left" if col == "queue" else "right")
    for name in sorted(set(queued) | set(running) | set(wmax)):
        w = f"{workers.get(name, 0):.0f}/{wmax[name]:.0f}" if name in wmax else "-"
        q.add_row(name, f"{queued.get(name, 0):.0f}", f"{running.get(name, 0):.0f}",
                  _secs(oldest.get(name)) if oldest.get(name) else "-", w)

    finished = _by(results, "finished", "state")
    t = Table(title="Throughput and latency", expand=True)
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_row("tasks finished/s (1m)", f"{sum(finished.values()):.2f}")
    for state in ("success", "failed", "up_for_retry"):
        if finished.get(state):
            t.add_row(f"  {state}/s", f"{finished[state]:.2f}")
    t.add_row("task duration p50 / p95 (5m)",
              f"{_secs(_scalar(results, 'duration_p50'))} / {_secs(_scalar(results, 'duration_p95'))}")
    t.add_row("scheduled -> queued p95 (5m)", _secs(_scalar(results, "sched_p95")))

    c = Table(title="Schedulers, dag-processor, triggerer", expand=True)
    c.add_column("component")
    c.add_column("heartbeat age", justify="right")
    for r in sorted(results.get("heartbeats", []), key=lambda r: r["metric"].get("component", "")):
        c.add_row(r["metric"].get("component", "?"), _secs(float(r["value"][1])))

    problems = [f"down: {r['metric'].get('component')}" for r in results.get("down", [])]
    problems += [f"alert: {r['metric'].get('alertname')} ({r['metric'].get('severity', '')})"
                 + (f" {r['metric']['queue']}" if "queue" in r["metric"] else "")
                 for r in results.get("firing", [])]
    return View(q, t, c, problems)


def render(view: View, header: str) -> Group:
    lines = [header, view.queues, view.throughput, view.components]
    lines.append("[red]" + "\n".join(view.problems) + "[/red]" if view.problems else "[green]no alerts firing[/green]")
    return Group(*lines)


def query_all(prometheus_url: str, get: Callable = httpx.get) -> Results:
    out: Results = {}
    for key, expr in QUERIES.items():
        try:
            r = get(f"{prometheus_url}/api/v1/query", params={"query": expr}, timeout=5)
            r.raise_for_status()
            out[key] = r.json()["data"]["result"]
        except (httpx.HTTPError, KeyError, ValueError) as e:
            raise AirscaleError(
                f"cannot query Prometheus at {prometheus_url} ({e.__class__.__name__})",
                "is the cluster up with monitoring on? airscale status",
            ) from None
    return out


def frame(prometheus_url: str, cluster: str) -> Group:
    results = query_all(prometheus_url)
    return render(build_view(results), f"[bold]airscale top[/bold] {cluster}  {time.strftime('%H:%M:%S')}")
