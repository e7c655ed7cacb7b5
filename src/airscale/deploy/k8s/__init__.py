"""Kubernetes objects and Helm values derived from the spec (pure: dicts in, dicts out).

airscale does not run its own controllers on Kubernetes: it hands the spec to the engines that
already exist there. One module per concern:

- `values`: Helm values of the official Apache Airflow chart (main and worker-only releases)
  and the airflow.cfg they carry;
- `workers`: which release's worker Deployment serves which queue, and scale-down safety;
- `keda`: ScaledObjects and the TriggerAuthentication that scale the workers;
- `objects`: airscale's own Deployments, Services, RBAC and ConfigMaps;
- `monitoring`: alert rules and dashboards;
- `network`: NetworkPolicies;
- `secrets`: the Secrets the rendering refers to by name;
- `ports`: every Kubernetes port; `naming`: names and labels shared by all of them.

deploy/render.py groups the objects into files.
"""

from __future__ import annotations

from .keda import (
    DESIRED_METRIC,
    chart_sql_query,
    desired_workers_query,
    scaled_objects,
    trigger_authentication,
)
from .monitoring import alert_rules, dashboard, grafana_configmap, prometheus_rule
from .naming import (
    AUTOSCALER,
    CELERY,
    DRAIN_HOOK_CONFIGMAP,
    EXECUTORS,
    EXPORTER,
    KUBERNETES,
    SPEC_CONFIGMAP,
    chart_component_labels,
    chart_worker_labels,
)
from .network import network_policies
from .objects import (
    airscale_objects,
    autoscaler_rbac,
    drain_hook_configmap,
    pod_spec_config,
    spec_configmap,
)
from .secrets import required_secrets
from .values import (
    airflow_config,
    execution_api_url,
    helm_values,
    safe_airflow_config,
    worker_release_values,
    worker_release_values_files,
)
from .workers import (
    DELETION_COST,
    QUEUE_LABEL,
    WorkerSet,
    grace_period,
    worker_selector,
    worker_sets,
)

__all__ = [
    "AUTOSCALER", "CELERY", "DELETION_COST", "DESIRED_METRIC", "DRAIN_HOOK_CONFIGMAP", "EXECUTORS", "EXPORTER",
    "KUBERNETES", "QUEUE_LABEL", "SPEC_CONFIGMAP", "WorkerSet", "airflow_config", "airscale_objects",
    "alert_rules", "autoscaler_rbac", "chart_component_labels", "chart_sql_query", "chart_worker_labels",
    "dashboard", "desired_workers_query", "drain_hook_configmap", "execution_api_url", "grace_period",
    "grafana_configmap", "helm_values", "network_policies", "pod_spec_config", "prometheus_rule",
    "required_secrets", "safe_airflow_config", "scaled_objects", "spec_configmap", "trigger_authentication",
    "worker_release_values", "worker_release_values_files", "worker_selector", "worker_sets",
]
