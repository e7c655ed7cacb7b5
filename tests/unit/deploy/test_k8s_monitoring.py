"""Kubernetes gets the local cluster's monitoring, from the same sources, with data behind it.

- every local alert rule is in the PrometheusRule with the same expression, modulo the
  environment's parameters (observe/environment.py), or is left out for a stated reason;
- every local dashboard panel is in the dashboards ConfigMap, same rule;
- every metric a rule or panel reads has a producer in the rendered output, and Prometheus
  scrapes that producer (a ServiceMonitor selects its Service, which selects its pods);
- Kubernetes ports are Kubernetes' own, never the local block's;
- KEDA's Prometheus trigger does not error when the autoscaler's series is absent.
"""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry

from airscale.autoscale.metrics import AutoscalerMetrics
from airscale.deploy import k8s
from airscale.observe.dashboards import all_dashboards, file_name
from airscale.observe.dbmetrics import MetadataCollector
from airscale.observe.environment import METRIC_NAME, local_environment
from airscale.observe.exporter import build_registry, in_cluster_config
from airscale.observe.rules import rules
from airscale.observe.statsd import prom_name
from airscale.spec import parse_spec
from airscale.spec.ports import BLOCK_SIZE

from .deploy_cases import DATA, RENDERINGS, SPECS, bundles, spec_of

RENDERING_IDS = [pytest.param(n, e, id=f"{n}-{e}") for n, e in RENDERINGS]

# What the local cluster has and Kubernetes does not, and why. Anything else missing fails.
SUPERVISORD = "reads supervisord (component up/restarts): the kubelet restarts containers there"
NO_BROKER = "KubernetesExecutor: no Celery broker, no redis_exporter"
NO_CELERY_WORKERS = "KubernetesExecutor: no Celery workers, no autoscaler counting them"
# The data folder's disk is the local host's: on Kubernetes volumes are the kubelet's
# (kubelet_volume_stats_*), watched by the cluster's own monitoring.
LOCAL_DISK = "the data folder's disk is measured beside supervisord; pods use volumes"
LEFT_OUT_RULES = {
    k8s.CELERY: {"ComponentDown": SUPERVISORD, "ComponentRestarted": SUPERVISORD, "DataDiskAlmostFull": LOCAL_DISK},
    k8s.KUBERNETES: {"ComponentDown": SUPERVISORD, "ComponentRestarted": SUPERVISORD, "DataDiskAlmostFull": LOCAL_DISK,
                     "BrokerRestarted": NO_BROKER, "RedisMemoryHigh": NO_BROKER,
                     "WorkersPinnedAtMax": NO_CELERY_WORKERS, "AutoscalerSignalMissing": NO_CELERY_WORKERS,
                     "WorkersHeldByMemory": NO_CELERY_WORKERS},
}
LEFT_OUT_PANELS = {
    k8s.CELERY: {"Components up": SUPERVISORD},
    k8s.KUBERNETES: {"Components up": SUPERVISORD, "Redis memory": NO_BROKER, "Redis clients": NO_BROKER,
                     "Workers per queue (running, min, max)": NO_CELERY_WORKERS,
                     "Autoscaler: desired vs actual workers": NO_CELERY_WORKERS,
                     "Autoscaler: demand (queued + running tasks)": NO_CELERY_WORKERS},
}


def on_kubernetes(query: str, executor: str, spec) -> str:
    """A local query with the local environment's parameters replaced by Kubernetes' ones."""
    local, kube = local_environment(spec), k8s.kubernetes_environment(spec, executor)
    query = query.replace(local.workers_running, kube.workers_running)
    return query.replace(f"up{local.up_selector} ==", f"up{kube.up_selector} ==")


def rendered_rules(name: str, executor: str) -> dict[str, dict]:
    [rule] = [o for o in bundles()[(name, executor)].objects() if o["kind"] == "PrometheusRule"]
    return {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}


def rendered_panels(name: str, executor: str) -> dict[tuple[str, str], list[str]]:
    """(dashboard file, panel title) -> its queries, from the ConfigMap."""
    [cm] = [o for o in bundles()[(name, executor)].objects()
            if o["kind"] == "ConfigMap" and o["metadata"]["name"] == k8s.DASHBOARDS_CONFIGMAP]
    return {(f, p["title"]): [t["expr"] for t in p["targets"]]
            for f, text in cm["data"].items() for p in json.loads(text)["panels"]}


@pytest.mark.parametrize("name,executor", RENDERING_IDS)
def test_every_local_alert_rule_is_in_the_prometheus_rule(name: str, executor: str) -> None:
    spec = spec_of(name)
    local = {r.name: r for r in rules(spec)}
    rendered = rendered_rules(name, executor)
    missing = set(local) - set(rendered)
    assert missing == set(LEFT_OUT_RULES[executor]) & set(local), "left out without a stated reason"
    for alert in set(local) & set(rendered):
        assert rendered[alert]["expr"] == on_kubernetes(local[alert].expr, executor, spec), alert
        assert rendered[alert]["labels"]["severity"] == local[alert].severity, alert
        assert rendered[alert]["for"] == f"{local[alert].for_seconds}s", alert
    # Kubernetes-only rules are the ones the local spec turned off (the autoscaler), none other.
    assert set(rendered) - set(local) <= {"AutoscalerSignalMissing"}


def test_exporter_down_watches_exactly_the_scraped_services() -> None:
    rendered = rendered_rules("two-queues", k8s.CELERY)
    jobs = "|".join(k8s.metrics_services(k8s.CELERY))
    assert rendered["ExporterDown"]["expr"] == f'up{{namespace="airflow",job=~"{jobs}"}} == 0'


@pytest.mark.parametrize("name,executor", RENDERING_IDS)
def test_every_local_dashboard_panel_is_in_the_configmap(name: str, executor: str) -> None:
    spec = spec_of(name)
    local = {(file_name(b), p["title"]): [t["expr"] for t in p["targets"]]
             for b, board in all_dashboards(spec).items() for p in board["panels"]}
    rendered = rendered_panels(name, executor)
    missing = {title for _, title in set(local) - set(rendered)}
    assert missing == set(LEFT_OUT_PANELS[executor]) & {t for _, t in local}, "left out without a stated reason"
    for key in set(local) & set(rendered):
        assert rendered[key] == [on_kubernetes(q, executor, spec) for q in local[key]], key
    assert set(rendered) - set(local) <= {(file_name("workers"), t) for t in (
        "Autoscaler: desired vs actual workers", "Autoscaler: demand (queued + running tasks)")}


# -- producers ---------------------------------------------------------------------------------
class _EmptyDatabase:
    """A metadata database with no rows: the collector still names every family it serves."""

    autocommit = False
    closed = 0

    def cursor(self):
        return self

    def execute(self, *_):
        pass

    def fetchall(self):
        return []

    def fetchone(self):
        return (0, 5432)

    def close(self):
        pass


def _names(families) -> set[str]:
    return {s.name for f in families for s in f.samples} | {f.name for f in families}


def exporter_names(spec) -> set[str]:
    """What the exporter Deployment serves besides Airflow's statsd: its collectors as
    `airscale exporter` builds them (no supervisord), and the metadata gauges."""
    registry, _ = build_registry(in_cluster_config(spec, "0.0.0.0"), None)
    db = list(MetadataCollector(lambda: _EmptyDatabase(), list(spec.queues)).collect())
    assert "airscale_metadata_db_error" not in _names(db), "the fake database broke the collector"
    return _names(list(registry.collect())) | _names(db)


def autoscaler_names() -> set[str]:
    metrics = AutoscalerMetrics(CollectorRegistry())
    for g in (metrics.desired, metrics.actual, metrics.demand):
        g.labels("q").set(1)
    return _names(list(metrics.registry.collect()))


DOC = (DATA.parents[1] / "docs" / "metrics.md").read_text()


def is_statsd_name(name: str) -> bool:
    """An `airflow_*` name the exporter's statsd translation gives (docs/metrics.md lists them)."""
    base = name
    for suffix in ("_bucket", "_sum", "_count"):
        base = base.removesuffix(suffix)
    return name.startswith(prom_name("")) and (base in DOC or base.removesuffix("_total") in DOC)


def producer_of(name: str, spec) -> str | None:
    """The Service whose pods serve metric `name` (exporter, autoscaler, postgres_exporter,
    redis_exporter), or None."""
    if name in autoscaler_names():
        return k8s.AUTOSCALER
    if name in exporter_names(spec) or is_statsd_name(name):
        return k8s.EXPORTER
    if name.startswith("pg_"):
        return k8s.POSTGRES_EXPORTER
    if name.startswith("redis_"):
        return k8s.REDIS_EXPORTER
    return None


def scraped_services(b) -> set[str]:
    """Services a ServiceMonitor selects on a `metrics` port, with a Deployment behind them
    whose pods have that port."""
    objs = b.objects()
    out = set()
    for mon in [o for o in objs if o["kind"] == "ServiceMonitor"]:
        sel = mon["spec"]["selector"]["matchLabels"]
        for svc in [o for o in objs if o["kind"] == "Service"]:
            if not sel.items() <= svc["metadata"]["labels"].items():
                continue
            if {e["port"] for e in mon["spec"]["endpoints"]} - {p["name"] for p in svc["spec"]["ports"]}:
                continue
            for dep in [o for o in objs if o["kind"] == "Deployment"]:
                pod = dep["spec"]["template"]
                ports = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
                if svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items() and "metrics" in ports:
                    out.add(svc["metadata"]["name"])
    return out


@pytest.mark.parametrize("name,executor", RENDERING_IDS)
def test_every_metric_of_a_rule_or_panel_has_a_scraped_producer(name: str, executor: str) -> None:
    spec = spec_of(name)
    b = bundles()[(name, executor)]
    queries = [r["expr"] for r in rendered_rules(name, executor).values()]
    queries += [q for qs in rendered_panels(name, executor).values() for q in qs]
    names = {n for q in queries for n in METRIC_NAME.findall(q)}
    assert names, "no metric found: the pattern is broken"
    producers = {n: producer_of(n, spec) for n in sorted(names)}
    assert not [n for n, p in producers.items() if p is None], "metrics nothing on Kubernetes produces"
    unscraped = {n: p for n, p in producers.items() if p not in scraped_services(b)}
    assert not unscraped, "producers no ServiceMonitor scrapes"


def test_exporter_names_leave_supervisord_out() -> None:
    """The producer test would be void if the in-cluster exporter still served supervisord's
    metrics: it does not, and it does serve the queue bounds."""
    names = exporter_names(spec_of("two-queues"))
    assert "airscale_component_up" not in names and "airscale_workers_running" not in names
    assert {"airscale_workers_max", "airscale_task_instances", "airscale_task_finished_total"} <= names


# -- ports ---------------------------------------------------------------------------------------
def rendered_ports(b) -> set[int]:
    """Every port number in the rendered objects and in Airflow's statsd setting."""
    out = {b.values["config"]["metrics"]["statsd_port"]}
    for o in b.objects():
        if o["kind"] == "Deployment":
            out |= {p["containerPort"] for c in o["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        elif o["kind"] == "Service":
            out |= {p["port"] for p in o["spec"]["ports"]}
        elif o["kind"] == "NetworkPolicy":
            out |= {p["port"] for r in o["spec"]["ingress"] for p in r["ports"]}
    return out


@pytest.mark.parametrize("name,executor", RENDERING_IDS)
def test_no_rendered_port_is_in_the_local_port_block(name: str, executor: str) -> None:
    block = spec_of(name).ports
    local = set(range(block.base, block.base + BLOCK_SIZE))
    assert not rendered_ports(bundles()[(name, executor)]) & local


def test_kubernetes_ports_do_not_follow_base_port() -> None:
    from airscale.deploy import render

    moved = parse_spec(SPECS["two-queues"].replace("base_port: 28080", "base_port: 41000"),
                       DATA / "unused" / "airscale.yaml")
    assert moved.ports.base == 41000
    assert rendered_ports(render.bundle(moved)) == rendered_ports(bundles()[("two-queues", k8s.CELERY)])


def test_exporter_and_autoscaler_are_told_their_kubernetes_ports() -> None:
    objs = {o["metadata"]["name"]: o for o in bundles()[("two-queues", k8s.CELERY)].objects()
            if o["kind"] == "Deployment"}

    def command(name: str) -> list[str]:
        return objs[name]["spec"]["template"]["spec"]["containers"][0]["command"]

    assert command(k8s.EXPORTER)[-4:] == ["--port", "9102", "--statsd-port", "9125"]
    assert command(k8s.AUTOSCALER)[-2:] == ["--metrics-port", "9103"]


# -- KEDA ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [pytest.param(n, id=n) for n in SPECS])
def test_prometheus_triggers_tolerate_an_absent_metric(name: str) -> None:
    scaled = [o for o in bundles()[(name, k8s.CELERY)].objects() if o["kind"] == "ScaledObject"]
    assert scaled
    for so in scaled:
        types = [t["type"] for t in so["spec"]["triggers"]]
        assert "postgresql" in types, "the chart's SQL trigger carries the queue while the metric is absent"
        for t in so["spec"]["triggers"]:
            if t["type"] == "prometheus":
                assert t["metadata"]["ignoreNullValues"] == "true" or "fallback" in so["spec"], so["metadata"]["name"]
