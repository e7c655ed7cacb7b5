"""airscale's own objects: the spec ConfigMap, the exporter and autoscaler Deployments and
Services, the autoscaler's RBAC and the drain hook ConfigMap (pure).

airscale runs no controller of its own on Kubernetes; these pods read the spec from a
ConfigMap and the database and broker URLs from Secrets (by reference), so no rendered file
holds a secret.
"""

from __future__ import annotations

from typing import Any

import yaml

from airscale.spec import Spec

from .naming import (
    AUTOSCALER,
    CELERY,
    DRAIN_HOOK_CONFIGMAP,
    EXPORTER,
    SPEC_CONFIGMAP,
    SPEC_MOUNT,
    labels,
    meta,
)
from .values import safe_airflow_config
from .workers import DELETION_COST, worker_selector


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


def _deployment(spec: Spec, name: str, command: list[str], port: int, env: list[dict], sa: str) -> dict[str, Any]:
    k = spec.kubernetes
    pod_labels = {**labels(name), "tier": "airscale", "release": k.release}
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
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(port),
                                    "prometheus.io/path": "/metrics"},
                },
                "spec": {
                    "serviceAccountName": sa,
                    "automountServiceAccountToken": name == AUTOSCALER,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 50000, "fsGroup": 0},
                    "containers": [{
                        "name": name.removeprefix("airscale-"),
                        "image": k.airscale_image,
                        "command": command,
                        "env": env,
                        "ports": [{"name": "metrics", "containerPort": port, "protocol": "TCP"}],
                        "readinessProbe": {"httpGet": {"path": "/metrics", "port": "metrics"}, "periodSeconds": 10},
                        "livenessProbe": {"httpGet": {"path": "/metrics", "port": "metrics"},
                                          "periodSeconds": 30, "failureThreshold": 5},
                        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
                        "securityContext": _container_security(),
                        "volumeMounts": [
                            {"name": "spec", "mountPath": SPEC_MOUNT, "readOnly": True},
                            {"name": "tmp", "mountPath": "/tmp"},
                        ],
                    }],
                    "volumes": [
                        {"name": "spec", "configMap": {"name": SPEC_CONFIGMAP}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def _service(spec: Spec, name: str, port: int) -> dict[str, Any]:
    k = spec.kubernetes
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(name, k, name),
        "spec": {"selector": labels(name),
                 "ports": [{"name": "metrics", "port": port, "targetPort": "metrics", "protocol": "TCP"}]},
    }


def _service_account(spec: Spec, name: str, automount: bool) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(name, spec.kubernetes, name),
            "automountServiceAccountToken": automount}


def autoscaler_rbac(spec: Spec) -> list[dict[str, Any]]:
    """Least privilege: read worker pods and patch their deletion-cost annotation, in one namespace.

    RBAC cannot narrow `patch` to one annotation or to labelled pods (resourceNames does not
    work with list, and worker pod names are random), so the Role is namespaced and the verbs
    are the three the autoscaler needs; it cannot create, delete or exec into pods.
    """
    k = spec.kubernetes
    return [
        _service_account(spec, AUTOSCALER, True),
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


def airscale_objects(spec: Spec, executor: str = CELERY, drain_script: str = "") -> list[dict[str, Any]]:
    """Spec ConfigMap, exporter (always) and, with Celery, the autoscaler and the drain hook."""
    k = spec.kubernetes
    s = k.secrets
    ports = spec.ports
    spec_arg = f"{SPEC_MOUNT}/airscale.yaml"
    db_env = [_secret_env("AIRSCALE_DATABASE_URL", s.metadata, "connection")]
    broker_env = [_secret_env("AIRSCALE_BROKER_URL", s.broker, "connection")] if executor == CELERY else []
    objs: list[dict[str, Any]] = [
        spec_configmap(spec),
        _service_account(spec, EXPORTER, False),
        _deployment(spec, EXPORTER, ["airscale", "exporter", "--spec", spec_arg], ports.exporter,
                    db_env + broker_env, EXPORTER),
        _service(spec, EXPORTER, ports.exporter),
    ]
    if executor == CELERY:
        env = db_env + broker_env + [
            {"name": "AIRSCALE_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "AIRSCALE_WORKER_SELECTOR", "value": worker_selector(spec)},
        ]
        objs += autoscaler_rbac(spec)
        objs += [
            # --kubernetes: export the desired workers for KEDA, no actuator, and write the
            # worker pods' deletion cost every iteration (autoscale/in_cluster.py).
            _deployment(spec, AUTOSCALER, ["airscale", "autoscale", "--kubernetes", "--spec", spec_arg],
                        ports.autoscaler_metrics, env, AUTOSCALER),
            _service(spec, AUTOSCALER, ports.autoscaler_metrics),
            drain_hook_configmap(spec, drain_script),
        ]
    return objs
