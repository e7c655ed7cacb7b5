"""airscale's own objects: the spec ConfigMap, the Deployments, Services and ServiceAccounts of
the airscale exporter, the autoscaler, postgres_exporter and redis_exporter, the autoscaler's
RBAC and the drain hook ConfigMap (pure).

Ports are Kubernetes' own (ports.py), passed to airscale's processes on their command line,
never the spec's local block. Each Service names its scrape port `metrics`, which the
ServiceMonitors (monitoring.py) select; the exporter also receives Airflow's statsd on UDP.

airscale runs no controller of its own on Kubernetes; these pods read the spec from a
ConfigMap and the database and broker URLs from Secrets (by reference), so no rendered file
holds a secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from airscale.spec import Spec

from .naming import (
    AUTOSCALER, CELERY, DRAIN_HOOK_CONFIGMAP, EXPORTER, POSTGRES_EXPORTER, REDIS_EXPORTER, SPEC_CONFIGMAP, SPEC_MOUNT,
    labels, meta,
)
from .ports import (
    AUTOSCALER_METRICS_PORT, EXPORTER_METRICS_PORT, EXPORTER_STATSD_PORT, POSTGRES_EXPORTER_PORT, REDIS_EXPORTER_PORT,
)
from .values import safe_airflow_config
from .workers import DELETION_COST, worker_selector

# The airflow user of the Airflow images (airscale's image is built on one); `nobody` for the
# exporters' images, which are distroless and name no user of their own that runAsNonRoot
# could check.
AIRSCALE_UID = 50000
NOBODY_UID = 65534
# Port of each Service Prometheus scrapes, on every pod and Service named `metrics`.
METRICS_PORTS = {
    EXPORTER: EXPORTER_METRICS_PORT,
    POSTGRES_EXPORTER: POSTGRES_EXPORTER_PORT,
    AUTOSCALER: AUTOSCALER_METRICS_PORT,
    REDIS_EXPORTER: REDIS_EXPORTER_PORT,
}


def pod_spec_config(spec: Spec) -> dict[str, Any]:
    """The spec as the exporter and autoscaler pods read it: no URLs, listening on the pod IP.

    Database and broker URLs come from the Secrets as AIRSCALE_DATABASE_URL and
    AIRSCALE_BROKER_URL, so the ConfigMap holds nothing secret.
    """
    data = spec.model_dump(mode="json")
    data["cluster"]["listen_host"] = "0.0.0.0"
    data["cluster"]["data_dir"] = "/tmp/airscale"
    data["database"]["url"] = None
    data["broker"]["url"] = None
    data["airflow_config"], _ = safe_airflow_config(spec)
    if isinstance(data.get("monitoring"), dict) and "receivers" in data["monitoring"]:
        # Webhook and Slack URLs, SMTP passwords: they belong to Alertmanager's own Secret
        # (SECRETS.md), and neither the exporter nor the autoscaler sends alerts.
        data["monitoring"]["receivers"] = []
    return data


def spec_configmap(spec: Spec) -> dict[str, Any]:
    k = spec.kubernetes
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(SPEC_CONFIGMAP, k, "airscale"),
        "data": {"airscale.yaml": yaml.safe_dump(pod_spec_config(spec), sort_keys=False)},
    }


def drain_hook_configmap(spec: Spec, script: str) -> dict[str, Any]:
    k = spec.kubernetes
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(DRAIN_HOOK_CONFIGMAP, k, "airscale"),
        "data": {"drain_hook.py": script},
    }


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _container_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


@dataclass(frozen=True)
class ContainerPort:
    """A port of one of airscale's pods, and of its Service (same number, same name)."""

    name: str
    port: int
    protocol: str = "TCP"


def _metrics(name: str) -> ContainerPort:
    return ContainerPort("metrics", METRICS_PORTS[name])


def _pod_ports(ports: list[ContainerPort]) -> list[dict[str, Any]]:
    return [{"name": p.name, "containerPort": p.port, "protocol": p.protocol} for p in ports]


def _deployment(spec: Spec, name: str, image: str, command: list[str], env: list[dict], ports: list[ContainerPort],
                run_as_user: int = AIRSCALE_UID, mounts_spec: bool = True) -> dict[str, Any]:
    """A one-replica Deployment of airscale's; the first port is `metrics`, probed and scraped.

    `mounts_spec`: airscale's own processes read the spec ConfigMap; the third-party exporters
    take their settings from the environment.
    """
    k = spec.kubernetes
    pod_labels = {**labels(name), "tier": "airscale", "release": k.release}
    mounts = [{"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    if mounts_spec:
        mounts.insert(0, {"name": "spec", "mountPath": SPEC_MOUNT, "readOnly": True})
        volumes.insert(0, {"name": "spec", "configMap": {"name": SPEC_CONFIGMAP}})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(name, k, name),
        "spec": {
            "replicas": 1,
            # Two autoscalers would write deletion costs over each other: never run two at once.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": labels(name)},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "serviceAccountName": name,
                    "automountServiceAccountToken": name == AUTOSCALER,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": run_as_user, "fsGroup": 0},
                    "containers": [{
                        "name": name.removeprefix("airscale-"),
                        "image": image,
                        "command": command,
                        "env": env,
                        "ports": _pod_ports(ports),
                        "readinessProbe": {"httpGet": {"path": "/metrics", "port": "metrics"}, "periodSeconds": 10},
                        "livenessProbe": {"httpGet": {"path": "/metrics", "port": "metrics"},
                                          "periodSeconds": 30, "failureThreshold": 5},
                        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
                        "securityContext": _container_security(),
                        "volumeMounts": mounts,
                    }],
                    "volumes": volumes,
                },
            },
        },
    }


def _service(spec: Spec, name: str, ports: list[ContainerPort]) -> dict[str, Any]:
    k = spec.kubernetes
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(name, k, name),
        "spec": {"selector": labels(name),
                 "ports": [{"name": p.name, "port": p.port, "targetPort": p.name, "protocol": p.protocol}
                           for p in ports]},
    }


def _service_account(spec: Spec, name: str, automount: bool) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(name, spec.kubernetes, name),
            "automountServiceAccountToken": automount}


def autoscaler_rbac(spec: Spec) -> list[dict[str, Any]]:
    """Role and RoleBinding of the autoscaler's ServiceAccount. Least privilege: read worker pods and patch their deletion-cost annotation, in one namespace.

    RBAC cannot narrow `patch` to one annotation or to labelled pods (resourceNames does not
    work with list, and worker pod names are random), so the Role is namespaced and the verbs
    are the three the autoscaler needs; it cannot create, delete or exec into pods.
    """
    k = spec.kubernetes
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta(AUTOSCALER, k, AUTOSCALER,
                              annotations={"airscale.io/why": f"annotate busy Celery worker pods with {DELETION_COST}"}),
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "patch"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta(AUTOSCALER, k, AUTOSCALER),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": AUTOSCALER},
            "subjects": [{"kind": "ServiceAccount", "name": AUTOSCALER, "namespace": k.namespace}],
        },
    ]


def _component(spec: Spec, name: str, image: str, command: list[str], env: list[dict],
               ports: list[ContainerPort], **kw: Any) -> list[dict[str, Any]]:
    """ServiceAccount, Deployment and Service of one of airscale's pods."""
    return [
        _service_account(spec, name, name == AUTOSCALER),
        _deployment(spec, name, image, command, env, ports, **kw),
        _service(spec, name, ports),
    ]


def metrics_services(executor: str) -> list[str]:
    """The Services whose `metrics` port Prometheus scrapes (one ServiceMonitor each; the
    Prometheus Operator names the scrape job after the Service)."""
    celery = executor == CELERY
    return [name for name in METRICS_PORTS if celery or name not in (AUTOSCALER, REDIS_EXPORTER)]


def airscale_objects(spec: Spec, executor: str = CELERY, drain_script: str = "") -> list[dict[str, Any]]:
    """Spec ConfigMap, the airscale exporter and postgres_exporter (always) and, with Celery,
    the autoscaler with its RBAC, redis_exporter and the drain hook."""
    k = spec.kubernetes
    s = k.secrets
    spec_arg = f"{SPEC_MOUNT}/airscale.yaml"
    db_env = [_secret_env("AIRSCALE_DATABASE_URL", s.metadata, "connection")]
    broker_env = [_secret_env("AIRSCALE_BROKER_URL", s.broker, "connection")] if executor == CELERY else []
    objs: list[dict[str, Any]] = [spec_configmap(spec)]
    # Airflow's statsd comes straight to the exporter (values.py), which names the metrics
    # as on a local cluster (docs/metrics.md).
    objs += _component(spec, EXPORTER, k.airscale_image,
                       ["airscale", "exporter", "--spec", spec_arg, "--port", str(EXPORTER_METRICS_PORT),
                        "--statsd-port", str(EXPORTER_STATSD_PORT)],
                       db_env + broker_env, [_metrics(EXPORTER), ContainerPort("statsd", EXPORTER_STATSD_PORT, "UDP")])
    # pg_stat_activity and pg_settings of the metadata database, as postgres_exporter serves
    # them locally. Its own Secret: it should reach PostgreSQL itself (not PgBouncer) as a
    # pg_monitor role.
    objs += _component(spec, POSTGRES_EXPORTER, k.postgres_exporter_image, ["/bin/postgres_exporter",
                       f"--web.listen-address=:{POSTGRES_EXPORTER_PORT}"],
                       [_secret_env("DATA_SOURCE_NAME", s.postgres_exporter, "connection")],
                       [_metrics(POSTGRES_EXPORTER)], run_as_user=NOBODY_UID, mounts_spec=False)
    if executor == CELERY:
        env = db_env + broker_env + [
            {"name": "AIRSCALE_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "AIRSCALE_WORKER_SELECTOR", "value": worker_selector(spec)},
        ]
        # --kubernetes: export the desired workers for KEDA, no actuator, and write the
        # worker pods' deletion cost every iteration (autoscale/in_cluster.py).
        autoscaler = _component(spec, AUTOSCALER, k.airscale_image,
                                ["airscale", "autoscale", "--kubernetes", "--spec", spec_arg,
                                 "--metrics-port", str(AUTOSCALER_METRICS_PORT)],
                                env, [_metrics(AUTOSCALER)])
        objs += [autoscaler[0], *autoscaler_rbac(spec), *autoscaler[1:]]
        # The broker's memory, clients and uptime; the broker URL (with its password) is
        # redis_exporter's address.
        objs += _component(spec, REDIS_EXPORTER, k.redis_exporter_image, ["/redis_exporter"],
                           [_secret_env("REDIS_ADDR", s.broker, "connection"),
                            {"name": "REDIS_EXPORTER_WEB_LISTEN_ADDRESS", "value": f":{REDIS_EXPORTER_PORT}"}],
                           [_metrics(REDIS_EXPORTER)], run_as_user=NOBODY_UID,
                           mounts_spec=False)
        objs.append(drain_hook_configmap(spec, drain_script))
    return objs
