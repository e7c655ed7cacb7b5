"""Grafana dashboards as code, built from the spec (pure), plus Grafana provisioning files.

Built with grafana-foundation-sdk (Grafana's own typed builders, generated from its schemas),
then encoded to Grafana's JSON model, so a test can iterate over every panel query and run it
against the live Prometheus (tests/integration/test_observe.py). Panels only use metric names documented in
docs/metrics.md; a panel whose metrics nothing produces where the cluster runs (the autoscaler
when it is off, supervisord's on Kubernetes: environment.py) is left out, so every panel of a
generated dashboard has data to show. `airscale dashboards export` writes them for the local
cluster; `airscale render k8s` puts the same dashboards, built for the Kubernetes environment,
into a ConfigMap for Grafana's sidecar.

Dashboards: overview (capacity, queue, throughput, latency), schedulers, workers and
autoscaling, DAG/task drill-down, database and broker.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from grafana_foundation_sdk.builders import common
from grafana_foundation_sdk.builders import dashboard as sdk_dashboard
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_model
from grafana_foundation_sdk.models import dashboard as dashboard_model

from airscale.observe.environment import Environment, local_datasource, local_environment
from airscale.spec import Spec

DS_UID = "${datasource}"
RATE = "$__rate_interval"
PANEL_KINDS = {"timeseries": timeseries.Panel, "stat": stat.Panel}
# Every series carries the cluster's name (a target label of each scrape, locally and through
# the ServiceMonitors), so one Grafana can show several clusters.
CLUSTER_FILTER = ("cluster",)
# Variable name -> (label_values() query, label shown). Their queries read series that exist
# wherever the cluster runs (the exporter's and the spec's), so each variable has values.
VARIABLES = {
    "cluster": ("label_values(airscale_metadata_db_up, cluster)", "Cluster"),
    "queue": ("label_values(airscale_workers_max, queue)", "Queue"),
    "component": ("label_values(airscale_job_heartbeat_age_seconds, component)", "Component"),
    "dag_id": ("label_values(airflow_ti_finish_total, dag_id)", "DAG"),
}
# `name{` or a bare `name` of a metric in PromQL (not a function, label or legend).
_SELECTOR = re.compile(r"\b((?:airflow|airscale|pg|redis)_[a-z0-9_]+)\b(\{[^}]*\})?")


def _ds() -> dashboard_model.DataSourceRef:
    return dashboard_model.DataSourceRef(type_val="prometheus", uid=DS_UID)


def with_matchers(expr: str, labels: tuple[str, ...]) -> str:
    """`expr` with `label=~"$label"` added to every metric selector (pure)."""
    if not labels:
        return expr
    added = ", ".join(f'{label}=~"${label}"' for label in labels)

    def one(m: re.Match) -> str:
        inner = (m.group(2) or "{}")[1:-1].strip()
        return f"{m.group(1)}{{{inner + ', ' if inner else ''}{added}}}"

    return _SELECTOR.sub(one, expr)


def panel(title: str, exprs: list[tuple[str, str]], unit: str = "short", kind: str = "timeseries",
          description: str = "", filters: tuple[str, ...] = (), thresholds: list[tuple[float, str]] = ()):
    """A panel builder (grafana-foundation-sdk) with one Prometheus query per (expr, legend).

    `filters`: labels its metrics carry that a dashboard variable narrows, besides `cluster`.
    `thresholds`: (value, color) from the spec's alert thresholds, drawn as lines."""
    p = PANEL_KINDS[kind]().title(title).unit(unit).datasource(_ds())
    if description:
        p = p.description(description)
    if thresholds:
        steps = [dashboard_model.Threshold(None, "green")] + [dashboard_model.Threshold(v, c) for v, c in thresholds]
        p = p.thresholds(sdk_dashboard.ThresholdsConfig().mode(dashboard_model.ThresholdsMode.ABSOLUTE).steps(steps))
        if kind == "timeseries":
            p = p.thresholds_style(common.GraphThresholdsStyleConfig().mode(common_model.GraphTresholdsStyleMode.LINE))
    for i, (expr, legend) in enumerate(exprs):
        q = (prometheus.Dataquery().expr(with_matchers(expr, CLUSTER_FILTER + tuple(filters)))
             .ref_id(chr(ord("A") + i)).datasource(_ds()))
        p = p.with_target(q.legend_format(legend) if legend else q)
    return p


def dashboard(spec: Spec, uid: str, title: str, panels: list, variables: tuple[str, ...] = (),
              env: Environment | None = None) -> dict[str, Any]:
    """Build with the SDK, two panels per row (12 x 8 each), and return Grafana's JSON model.

    Panels with a query `env` lacks a producer for are left out (environment.py). Variables:
    the data source (the environment's by default), `cluster`, then `variables` (VARIABLES)."""
    env = env or local_environment(spec)
    panels = [p for p in panels if not any(env.lacks(t.expr) for t in p.build().targets)]
    d = (
        sdk_dashboard.Dashboard(f"airscale {spec.cluster.name}: {title}")
        .uid(f"airscale-{spec.cluster.name}-{uid}"[:40])
        .tags(["airscale", "airflow"])
        .editable()
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("utc")
        .with_variable(
            sdk_dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus")
            .current(dashboard_model.VariableOption(selected=True, text=env.datasource, value=env.datasource)))
    )
    for name in ("cluster", *variables):
        d = d.with_variable(_variable(name, spec.cluster.name if name == "cluster" else None))
    for i, p in enumerate(panels):
        d = d.with_panel(p.grid_pos(dashboard_model.GridPos(h=8, w=12, x=(i % 2) * 12, y=(i // 2) * 8)))
    return json.loads(json.dumps(d.build(), cls=JSONEncoder))


def _variable(name: str, current: str | None = None):
    query, label = VARIABLES[name]
    v = (
        sdk_dashboard.QueryVariable(name).label(label).query(query).datasource(_ds())
        .include_all(True).multi(True).all_value(".*").refresh(dashboard_model.VariableRefresh.ON_TIME_RANGE_CHANGED)
    )
    if current is not None:  # this cluster first; "All" is one click away
        v = v.current(dashboard_model.VariableOption(selected=True, text=[current], value=[current]))
    return v


def overview(spec: Spec, env: Environment) -> dict[str, Any]:
    t, Q = spec.monitoring.thresholds, _queue_filter(spec)
    return dashboard(spec, "overview", "Cluster overview", [
        panel("Task instances by state", [("sum by (state) (airscale_task_instances)", "{{state}}")],
              description="Non-terminal task instances from the metadata DB."),
        panel("Queued tasks per queue", [('sum by (queue) (airscale_task_instances{state="queued"})', "{{queue}}")],
              filters=Q),
        panel("Throughput: tasks finished per second",
              [(f"sum by (state) (rate(airscale_task_finished_total[{RATE}]))", "{{state}}")], unit="ops"),
        panel("Oldest queued task age", [("max by (queue) (airscale_oldest_queued_task_age_seconds)", "{{queue}}")],
              unit="s", filters=Q, thresholds=[(t.queued_task_warning_seconds, "orange"),
                                               (t.queued_task_critical_seconds, "red")]),
        panel("Capacity: executor slots",
              [("sum(airflow_executor_open_slots)", "open"), ("sum(airflow_executor_running_tasks)", "running"),
               ("sum(airflow_executor_queued_tasks)", "queued in executor")]),
        panel("Task duration p50 / p95",
              [(f"histogram_quantile(0.5, sum by (le) (rate(airflow_task_duration_seconds_bucket[{RATE}])))", "p50"),
               (f"histogram_quantile(0.95, sum by (le) (rate(airflow_task_duration_seconds_bucket[{RATE}])))", "p95")],
              unit="s"),
        panel("Latency: scheduled -> queued p95 (task.scheduled_duration)",
              [(f"histogram_quantile(0.95, sum by (le, queue) "
                f"(rate(airflow_task_scheduled_duration_seconds_bucket[{RATE}])))", "{{queue}}")], unit="s",
              filters=Q),
        panel("DAG runs active", [("sum by (state) (airscale_dag_runs)", "{{state}}")]),
    ], variables=_queue_filter(spec), env=env)


def schedulers(spec: Spec, env: Environment) -> dict[str, Any]:
    t, C = spec.monitoring.thresholds, ("component",)
    return dashboard(spec, "schedulers", "Schedulers and DAG processing", [
        panel("Heartbeat age", [("airscale_job_heartbeat_age_seconds", "{{job_type}} {{component}}")], unit="s",
              description="Seconds since each scheduler, dag-processor and triggerer last heartbeated (DB).",
              filters=C, thresholds=[(t.scheduler_heartbeat_stale_seconds, "red")]),
        panel("Scheduler heartbeats per second",
              [(f"sum by (component) (rate(airflow_scheduler_heartbeat_total[{RATE}]))", "{{component}}")],
              unit="ops", filters=C),
        panel("Scheduler loop duration p95",
              [(f"histogram_quantile(0.95, sum by (le, component) "
                f"(rate(airflow_scheduler_scheduler_loop_duration_seconds_bucket[{RATE}])))", "{{component}}")],
              unit="s", filters=C),
        panel("Critical section duration p95",
              [(f"histogram_quantile(0.95, sum by (le, component) "
                f"(rate(airflow_scheduler_critical_section_duration_seconds_bucket[{RATE}])))", "{{component}}")],
              unit="s", filters=C),
        panel("Executable and starving tasks",
              [("sum by (component) (airflow_scheduler_tasks_executable)", "executable {{component}}"),
               ("sum by (component) (airflow_scheduler_tasks_starving)", "starving {{component}}")], filters=C),
        panel("DAG files: parse time and import errors",
              [("max(airflow_dag_processing_total_parse_time)", "total parse time (s)"),
               ("airscale_dag_import_errors", "import errors")], thresholds=[(t.import_errors, "red")]),
        panel("DAG bag size", [("max(airflow_dagbag_size)", "DAGs")]),
        panel("Triggerer capacity left", [("sum by (component) (airflow_triggerer_capacity_left)", "{{component}}")],
              filters=C),
    ], variables=("component",), env=env)


def workers(spec: Spec, env: Environment) -> dict[str, Any]:
    Q = _queue_filter(spec)
    panels = [
        panel("Workers per queue (running, min, max)",
              [(env.workers_running, "running {{queue}}"), ("airscale_workers_min", "min {{queue}}"),
               ("airscale_workers_max", "max {{queue}}")], filters=Q),
        panel("Running tasks per queue", [('sum by (queue) (airscale_task_instances{state="running"})', "{{queue}}")],
              filters=Q),
        panel("Pool slots",
              [("sum by (pool) (airflow_pool_open_slots)", "open {{pool}}"),
               ("sum by (pool) (airflow_pool_running_slots)", "running {{pool}}"),
               ("sum by (pool) (airflow_pool_queued_slots)", "queued {{pool}}")]),
        panel("Components up", [("airscale_component_up", "{{component}}")], kind="stat"),
        panel("Tasks started per second by worker",
              [(f"sum by (component) (rate(airflow_ti_start_total[{RATE}]))", "{{component}}")], unit="ops"),
        panel("Autoscaler: desired vs actual workers",
              [("airscale_autoscaler_desired_workers", "desired {{queue}}"),
               ("airscale_autoscaler_actual_workers", "actual {{queue}}")], filters=Q),
        panel("Autoscaler: demand (queued + running tasks)",
              [("airscale_autoscaler_demand_tasks", "{{queue}}")], filters=Q),
    ]
    return dashboard(spec, "workers", "Workers and autoscaling", panels, variables=_queue_filter(spec), env=env)


def dags(spec: Spec, env: Environment) -> dict[str, Any]:
    D = ("dag_id",)
    return dashboard(spec, "dags", "DAG and task drill-down", [
        panel("Task finishes by task and state",
              [(f"sum by (task_id, state) (increase(airflow_ti_finish_total[{RATE}]))", "{{task_id}} {{state}}")],
              filters=D),
        panel("Task duration p95 by task",
              [(f"histogram_quantile(0.95, sum by (le, task_id) "
                f"(rate(airflow_task_duration_seconds_bucket[{RATE}])))", "{{task_id}}")], unit="s", filters=D),
        panel("Latest DAG run duration", [("airscale_dag_run_last_duration_seconds", "{{dag_id}} {{state}}")],
              unit="s", filters=D),
        panel("Latest DAG run schedule delay", [("airscale_dag_run_last_schedule_delay_seconds", "{{dag_id}}")],
              unit="s", filters=D),
        panel("Failed tasks in the failure window", [("airscale_task_instances_failed_recent", "{{dag_id}}")],
              filters=D, thresholds=[(spec.monitoring.thresholds.task_failures, "red")]),
        panel("DAG run durations p95 (statsd)",
              [(f"histogram_quantile(0.95, sum by (le, dag_id, state) "
                f"(rate(airflow_dagrun_duration_seconds_bucket[{RATE}])))", "{{dag_id}} {{state}}")],
              unit="s", filters=D),
    ], variables=("dag_id",), env=env)


def _queue_filter(spec: Spec) -> tuple[str, ...]:
    """The queue filter and variable: only where there are queues (not the LocalExecutor profile)."""
    return ("queue",) if spec.uses_celery else ()


def database(spec: Spec, env: Environment) -> dict[str, Any]:
    panels = [
        panel("PostgreSQL connections by state", [("sum by (state) (pg_stat_activity_count)", "{{state}}")]),
        panel("PostgreSQL connections used",
              [("sum(pg_stat_activity_count) / max(pg_settings_max_connections)", "share of max_connections")],
              unit="percentunit", thresholds=[(spec.monitoring.thresholds.postgres_connections_ratio, "red")]),
        panel("PostgreSQL commits per second",
              [(f'sum(rate(pg_stat_database_xact_commit{{datname="airflow"}}[{RATE}]))', "commits")], unit="ops"),
        panel("Exporter: metadata query time", [("airscale_metadata_scrape_seconds", "collect")], unit="s"),
        panel("Redis memory", [("redis_memory_used_bytes", "used")], unit="bytes"),
        panel("Redis clients", [("redis_connected_clients", "clients")]),
    ]
    return dashboard(spec, "database", "Database and broker", panels, env=env)


def all_dashboards(spec: Spec, env: Environment | None = None) -> dict[str, dict[str, Any]]:
    """Every dashboard by name, for `env` (default: the local cluster)."""
    env = env or local_environment(spec)
    return {name: fn(spec, env) for name, fn in
            (("overview", overview), ("schedulers", schedulers), ("workers", workers), ("dags", dags),
             ("database", database))}


def file_name(name: str) -> str:
    """File of a dashboard, in an export folder and in the Kubernetes ConfigMap alike."""
    return f"airscale-{name}.json"


def queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of every panel."""
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p["targets"]]


def provisioning(spec: Spec, dashboards_dir: Path) -> dict[str, str]:
    """Grafana provisioning files: a datasource for the cluster's Prometheus and a file provider."""
    prom = f"http://{spec.client_host}:{spec.ports.prometheus}"
    name = local_datasource(spec)
    datasources = {"apiVersion": 1, "datasources": [
        {"name": name, "uid": name, "type": "prometheus", "access": "proxy", "url": prom, "isDefault": False,
         "jsonData": {"timeInterval": f"{spec.monitoring.scrape_interval_seconds}s"}}]}
    providers = {"apiVersion": 1, "providers": [
        {"name": name, "folder": f"airscale {spec.cluster.name}", "type": "file", "disableDeletion": False,
         "options": {"path": str(dashboards_dir)}}]}
    return {
        "datasources/airscale.yaml": yaml.safe_dump(datasources, sort_keys=False),
        "dashboards/airscale.yaml": yaml.safe_dump(providers, sort_keys=False),
    }


def export(spec: Spec, out: Path) -> list[Path]:
    """Write DIR/dashboards/*.json and DIR/provisioning/{datasources,dashboards}/airscale.yaml."""
    written = []
    boards = out / "dashboards"
    boards.mkdir(parents=True, exist_ok=True)
    for name, board in all_dashboards(spec).items():
        p = boards / file_name(name)
        p.write_text(json.dumps(board, indent=2) + "\n")
        written.append(p)
    for rel, text in provisioning(spec, boards.resolve()).items():
        p = out / "provisioning" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        written.append(p)
    return written
