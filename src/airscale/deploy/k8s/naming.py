"""Names and labels shared by every rendered object (pure).

One place for the names other objects refer to (a Service's selector, a RoleBinding's
subject, the chart's component labels), so that two files cannot spell one object two ways.
"""

from __future__ import annotations

from typing import Any

from airscale.spec.kubernetes import KubernetesSpec

CELERY = "celery"
KUBERNETES = "kubernetes"
EXECUTORS = (CELERY, KUBERNETES)

# airscale's own objects (objects.py).
AUTOSCALER = "airscale-autoscaler"
EXPORTER = "airscale-exporter"
POSTGRES_EXPORTER = "airscale-postgres-exporter"
REDIS_EXPORTER = "airscale-redis-exporter"
DRAIN_HOOK_CONFIGMAP = "airscale-drain-hook"
SPEC_CONFIGMAP = "airscale-spec"
SPEC_MOUNT = "/etc/airscale"
DRAIN_MOUNT = "/opt/airscale"


def labels(component: str) -> dict[str, str]:
    """Labels of an airscale object; `app.kubernetes.io/name` is its selector."""
    return {
        "app.kubernetes.io/name": component,
        "app.kubernetes.io/part-of": "airscale",
        "app.kubernetes.io/managed-by": "airscale",
    }


def meta(name: str, k: KubernetesSpec, component: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": k.namespace, "labels": labels(component), **extra}


def chart_component_labels(k: KubernetesSpec, component: str) -> dict[str, str]:
    """Labels the chart puts on the pods of one of its components in the main release."""
    return {"tier": "airflow", "component": component, "release": k.release}


def chart_worker_labels(k: KubernetesSpec) -> dict[str, str]:
    """Labels the chart puts on Celery worker pods (templates/workers/worker-deployment.yaml)."""
    return chart_component_labels(k, "worker")
