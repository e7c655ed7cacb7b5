"""NetworkPolicies: ingress for airscale's pods and the holes they need in the chart's own
policies (pure)."""

from __future__ import annotations

from typing import Any

from airscale.spec import Spec

from .naming import CELERY, EXPORTER, chart_component_labels, labels, meta
from .objects import METRICS_PORTS, metrics_services
from .ports import API_SERVER_PORT, EXPORTER_STATSD_PORT, PGBOUNCER_PORT, REDIS_PORT, WORKER_LOGS_PORT
from .workers import worker_sets


def _ns(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


def _ingress_policy(spec: Spec, name: str, selector: dict[str, Any], peers: list[dict], port: int,
                    protocol: str = "TCP") -> dict[str, Any]:
    """`selector`: matchLabels of the pods the rule admits traffic to, or a whole label selector
    (a dict with matchExpressions)."""
    k = spec.kubernetes
    pod_selector = selector if "matchExpressions" in selector else {"matchLabels": selector}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(name, k, "airscale"),
        "spec": {"podSelector": pod_selector, "policyTypes": ["Ingress"],
                 "ingress": [{"from": peers, "ports": [{"protocol": protocol, "port": port}]}]},
    }


def _release_pods(releases: list[str], component: str | None = None) -> dict[str, Any]:
    """Label selector of the chart's pods in some releases (all components, or one)."""
    pod_labels = {"tier": "airflow", **({"component": component} if component else {})}
    return {"matchLabels": pod_labels,
            "matchExpressions": [{"key": "release", "operator": "In", "values": releases}]}


def network_policies(spec: Spec, executor: str = CELERY) -> list[dict[str, Any]]:
    """Ingress rules for airscale's pods, and the holes they need in the chart's own policies.

    The chart (networkPolicies.enabled) lets only its own release's components reach Redis
    and PgBouncer, and admits nothing to the api-server unless
    `apiServer.networkPolicy.ingress.from` lists peers; policies add up, so these open exactly
    the extra paths: Prometheus to each metrics port, every Airflow pod (all releases) to the
    exporter's statsd port, airscale's pods to PgBouncer and Redis, KEDA to PgBouncer (SQL
    trigger), Airflow's pods to the Execution API (Airflow 3 workers report task state through
    it), and, for the worker-only releases of the other queues, their workers to the main
    release's PgBouncer and Redis and the main api-server to their log servers.
    """
    k = spec.kubernetes
    prom = [_ns(k.monitoring_namespace)]
    airscale_pods = {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "airscale"}}}
    extra = [ws.release for ws in worker_sets(spec)[1:]] if executor == CELERY else []
    extra_workers = [{"podSelector": _release_pods(extra, "worker")}] if extra else []
    airflow_pods = [{"podSelector": _release_pods([k.release, *extra])}]
    pols = [_ingress_policy(spec, name, labels(name), prom, METRICS_PORTS[name]) for name in metrics_services(executor)]
    pols += [
        _ingress_policy(spec, "airscale-statsd", labels(EXPORTER), airflow_pods, EXPORTER_STATSD_PORT, protocol="UDP"),
        _ingress_policy(spec, "airscale-to-pgbouncer", chart_component_labels(k, "pgbouncer"),
                        [airscale_pods] + ([_ns(k.keda_namespace)] if executor == CELERY else []) + extra_workers,
                        PGBOUNCER_PORT),
        _ingress_policy(spec, "airscale-execution-api", chart_component_labels(k, "api-server"),
                        airflow_pods, API_SERVER_PORT),
    ]
    if executor == CELERY and spec.broker.url is None:
        pols.append(_ingress_policy(spec, "airscale-to-redis", chart_component_labels(k, "redis"),
                                    [airscale_pods] + extra_workers, REDIS_PORT))
    if extra:
        # Task logs: the main api-server fetches them from each worker's log server.
        pols.append(_ingress_policy(spec, "airscale-queue-worker-logs", _release_pods(extra, "worker"),
                                    [{"podSelector": {"matchLabels": chart_component_labels(k, "api-server")}}],
                                    WORKER_LOGS_PORT))
    return pols
