"""Specs and renderings shared by the deploy tests (imported by the test modules), and the offline validators.

Validation is offline and strict: built-in kinds against the Kubernetes OpenAPI schemas that
the `kubernetes-validate` package ships, custom resources against schemas extracted from their
CRDs (tests/data/crds), the Helm values against the chart's own values.schema.json.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from airscale.deploy import k8s, render
from airscale.spec import parse_spec

DATA = Path(__file__).resolve().parents[2] / "data"
CHART_SCHEMA = DATA / "helm-chart" / "values.schema.json"
CHART_VALUES = DATA / "helm-chart" / "values.yaml"
CRDS = DATA / "crds"
K8S_VERSION = "1.30.0"

CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobjects.v1alpha1.schema.yaml",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda.sh_triggerauthentications.v1alpha1.schema.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_prometheusrules.v1.schema.yaml",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitors.v1.schema.yaml",
}

# Specs that exercise different branches of the rendering.
SPECS: dict[str, str] = {
    "defaults": "{}",
    "two-queues": """
cluster: {name: demo, base_port: 28080}
schedulers: {count: 2}
queues:
  default: {min_workers: 2, max_workers: 4, concurrency: 8}
  reports: {min_workers: 1, max_workers: 2, concurrency: 4}
workers: {drain_timeout: 900}
""",
    "external-db-and-broker": """
cluster: {name: ext}
schedulers: {count: 3}
queues:
  etl-heavy: {min_workers: 0, max_workers: 10, concurrency: 16}
database: {url: "postgresql+psycopg2://airflow:db-pw-SHOULD-NOT-LEAK@db.example:5432/airflow"}
broker: {url: "redis://:redis-pw-SHOULD-NOT-LEAK@redis.example:6379/0"}
autoscaling: {scale_to_zero: true, stabilization_window: 120}
kubernetes:
  namespace: data-platform
  release: prod
  image_repository: registry.example/airflow
  image_tag: 3.3.2-python3.11
  storage_class: fast-ssd
  dags_git_repo: https://git.example/dags.git
  worker_resources: {cpu_request: "2", memory_request: 4Gi, cpu_limit: "4", memory_limit: 8Gi}
  secrets: {metadata: prod-db, broker: prod-redis}
airflow_config:
  core: {parallelism: 64}
  smtp: {smtp_password: smtp-pw-SHOULD-NOT-LEAK, smtp_host: mail.example}
""",
}

RENDERINGS = [(name, ex) for name in SPECS for ex in k8s.EXECUTORS]


def spec_of(name: str):
    return parse_spec(SPECS[name], Path("/tmp/airscale-deploy-test/airscale.yaml"))


def bundle_of(name: str, executor: str) -> render.Bundle:
    return render.bundle(spec_of(name), executor)


@functools.cache
def bundles() -> dict[tuple[str, str], render.Bundle]:
    return {(n, ex): bundle_of(n, ex) for n, ex in RENDERINGS}


def closed(schema: Any) -> Any:
    """Copy of a schema where every object that lists properties rejects unknown ones."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schema)
    return schema


def crd_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    schema = yaml.safe_load((CRDS / CRD_SCHEMAS[(api_version, kind)]).read_text())
    return jsonschema.Draft202012Validator(closed(schema))


def chart_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(CHART_SCHEMA.read_text())
    return jsonschema.Draft7Validator(schema)


def helm_coalesce(defaults: Any, overrides: Any) -> Any:
    """Values as Helm merges them: maps merge key by key, anything else replaces, null deletes."""
    if isinstance(defaults, dict) and isinstance(overrides, dict):
        out = dict(defaults)
        for k, v in overrides.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = helm_coalesce(defaults.get(k), v)
        return out
    return copy.deepcopy(overrides)


@functools.cache
def chart_defaults() -> dict:
    return yaml.safe_load(CHART_VALUES.read_text())
