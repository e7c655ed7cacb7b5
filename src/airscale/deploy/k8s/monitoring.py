"""What Prometheus and Grafana need on Kubernetes: alert rules, dashboards and scrape targets (pure).

Nothing here is written for Kubernetes alone. The PrometheusRule holds the local cluster's
rule group (observe/rules.py) and the dashboards ConfigMap the dashboards `airscale
dashboards export` writes (observe/dashboards.py), both built for the Kubernetes environment
(`kubernetes_environment`): no supervisord, so the rules and panels on what only supervisord
knows (component up, restarts) are left out; running workers per queue come from the
autoscaler, which counts the worker pods; `up` is narrowed to this installation's scrape jobs,
as the Prometheus is shared.

Every metric those rules and panels read has a producer here, scraped through a ServiceMonitor
(`service_monitors`, one per Service with a `metrics` port, objects.py): airscale's exporter
(Airflow's statsd and the metadata database), the autoscaler, postgres_exporter and, with
Celery, redis_exporter. The Prometheus Operator names each scrape job after its Service.
"""

from __future__ import annotations

import json
from typing import Any

from airscale.observe.dashboards import all_dashboards, file_name
from airscale.observe.environment import Environment
from airscale.observe.rules import rule_group
from airscale.spec import Spec

from .naming import CELERY, meta
from .objects import metrics_services

DASHBOARDS_CONFIGMAP = "airscale-dashboards"
# The autoscaler's count of worker pods serving a queue (autoscale/metrics.py).
WORKER_PODS_METRIC = "airscale_autoscaler_actual_workers"


def kubernetes_environment(spec: Spec, executor: str = CELERY) -> Environment:
    """Where the rendered cluster's monitoring runs (observe/environment.py)."""
    celery = executor == CELERY
    jobs = "|".join(metrics_services(executor))
    return Environment(
        name="kubernetes", supervised=False, workers_running=WORKER_PODS_METRIC,
        up_selector=f'{{namespace="{spec.kubernetes.namespace}",job=~"{jobs}"}}',
        autoscaler=celery, broker=celery,
    )


def _labelled_meta(spec: Spec, name: str, extra_labels: dict[str, str]) -> dict[str, Any]:
    obj_meta = meta(name, spec.kubernetes, "airscale")
    obj_meta["labels"] = {**obj_meta["labels"], **extra_labels}
    return obj_meta


def prometheus_rule(spec: Spec, executor: str = CELERY) -> dict[str, Any]:
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": _labelled_meta(spec, "airscale", spec.kubernetes.prometheus_rule_labels),
            "spec": {"groups": [rule_group(spec, kubernetes_environment(spec, executor))]}}


def dashboards_configmap(spec: Spec, executor: str = CELERY) -> dict[str, Any]:
    """Every dashboard, one key each, for Grafana's dashboard sidecar."""
    k = spec.kubernetes
    boards = all_dashboards(spec, kubernetes_environment(spec, executor))
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _labelled_meta(spec, DASHBOARDS_CONFIGMAP, {k.grafana_dashboard_label: "1"}),
            "data": {file_name(name): json.dumps(board, indent=1) for name, board in boards.items()}}


def service_monitors(spec: Spec, executor: str = CELERY) -> list[dict[str, Any]]:
    """One ServiceMonitor per metrics Service, selecting it by its own labels."""
    k = spec.kubernetes
    interval = f"{spec.monitoring.scrape_interval_seconds}s"
    return [{
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _labelled_meta(spec, name, k.service_monitor_labels),
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "namespaceSelector": {"matchNames": [k.namespace]},
            # The cluster's name on every series, as locally (observe.alertmanager.cluster_label):
            # the dashboards' cluster variable and filters read it.
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": interval,
                           "relabelings": [{"action": "replace", "targetLabel": "cluster",
                                            "replacement": spec.cluster.name}]}],
        },
    } for name in metrics_services(executor)]
