"""Kubernetes objects and Helm values derived from the spec (pure: dicts in, dicts out).

airscale does not run its own controllers on Kubernetes: it hands the spec to the engines that
already exist there. One module per concern:

- `values`: Helm values of the official Apache Airflow chart (main and worker-only releases)
  and the airflow.cfg they carry;
- `workers`: which release's worker Deployment serves which queue, and scale-down safety;
- `keda`: ScaledObjects and the TriggerAuthentication that scale the workers;
- `objects`: airscale's own Deployments (exporter, autoscaler, postgres_exporter, redis_exporter),
  Services, RBAC and ConfigMaps;
- `monitoring`: the local cluster's alert rules and dashboards for Kubernetes, ServiceMonitors;
- `network`: NetworkPolicies;
- `secrets`: the Secrets the rendering refers to by name;
- `ports`: every Kubernetes port; `naming`: names and labels shared by all of them.

deploy/render.py groups the objects into files.
"""

from __future__ import annotations

from .keda import DESIRED_METRIC, chart_sql_query, desired_workers_query, scaled_objects, trigger_authentication
from .monitoring import (
    DASHBOARDS_CONFIGMAP, dashboards_configmap, kubernetes_environment, prometheus_rule, service_monitors,
)
from .naming import (
    AUTOSCALER, CELERY, DRAIN_HOOK_CONFIGMAP, EXECUTORS, EXPORTER, KUBERNETES, POSTGRES_EXPORTER, REDIS_EXPORTER,
    SPEC_CONFIGMAP, chart_component_labels, chart_worker_labels,
)
from .network import network_policies
from .objects import (
    airscale_objects, autoscaler_rbac, drain_hook_configmap, metrics_services, pod_spec_config, spec_configmap,
)
from .secrets import required_secrets
from .values import (
    airflow_config, execution_api_url, exporter_statsd_settings, helm_values, safe_airflow_config,
    worker_release_values, worker_release_values_files,
)
from .workers import DELETION_COST, QUEUE_LABEL, WorkerSet, grace_period, worker_selector, worker_sets

__all__ = [
    "AUTOSCALER", "CELERY", "DASHBOARDS_CONFIGMAP", "DELETION_COST", "DESIRED_METRIC", "DRAIN_HOOK_CONFIGMAP",
    "EXECUTORS", "EXPORTER", "KUBERNETES", "POSTGRES_EXPORTER", "QUEUE_LABEL", "REDIS_EXPORTER", "SPEC_CONFIGMAP",
    "WorkerSet", "airflow_config", "airscale_objects", "autoscaler_rbac", "chart_component_labels",
    "chart_sql_query", "chart_worker_labels", "dashboards_configmap", "desired_workers_query",
    "drain_hook_configmap", "execution_api_url", "exporter_statsd_settings", "grace_period", "helm_values",
    "kubernetes_environment", "metrics_services", "network_policies", "pod_spec_config", "prometheus_rule",
    "required_secrets", "safe_airflow_config", "scaled_objects", "service_monitors", "spec_configmap",
    "trigger_authentication", "worker_release_values", "worker_release_values_files", "worker_selector",
    "worker_sets",
]
