"""The `kubernetes` section of the spec: what `airscale render k8s` needs beyond the cluster.

The rest of the spec (schedulers, queues and their bounds, drain timeout, autoscaling) is
reused as is, so one spec describes the same cluster on one machine and on Kubernetes.
Nothing here holds a secret: the rendering refers to Secrets by name only, and the user
creates them (`airscale render k8s` writes SECRETS.md with the keys each one needs).
"""

from __future__ import annotations

import re

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from airscale.spec.types import HttpUrl

# RFC 1123 label: what Kubernetes accepts for a namespace or a Helm release name.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?$"
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
# Container image references: [registry[:port]/]path[:tag][@digest], as the OCI distribution spec
# allows them (an image repository alone has no tag and no digest).
IMAGE_REPOSITORY = r"^[a-z0-9]([a-z0-9._/:-]{0,253}[a-z0-9])?$"
IMAGE = r"^[a-z0-9][a-z0-9._/:-]{0,254}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
IMAGE_TAG = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
# A git branch or tag name (git check-ref-format, simplified): no spaces, no leading '-'.
GIT_REF = r"^[A-Za-z0-9_][A-Za-z0-9_./-]{0,199}$"
# Where git-sync may pull from: https or ssh URLs, or scp-like git@host:path.
GIT_REPO = r"^(https://|ssh://|git@)[A-Za-z0-9._~:/@%+-]{1,500}$"
# Kubernetes label keys ([prefix/]name) and values.
LABEL_KEY = r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
LABEL_VALUE = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"
Labels = Annotated[
    dict[Annotated[str, Field(pattern=LABEL_KEY)], Annotated[str, Field(pattern=LABEL_VALUE)]],
    Field(max_length=32),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class Resources(_Model):
    cpu_request: str = Field("500m", description="CPU reserved for the container by the Kubernetes scheduler (a quantity: 500m, 2).")
    memory_request: str = Field("1Gi", description="Memory reserved for the container (Kubernetes quantity).")
    cpu_limit: str | None = Field(
        None,
        description="CPU limit; empty for none (CPU limits throttle bursty task start-up).",
    )
    memory_limit: str | None = Field("2Gi", description="Memory limit; the container is OOM-killed above it.")

    @field_validator("cpu_request", "memory_request", "cpu_limit", "memory_limit")
    @classmethod
    def _quantity(cls, v: str | None) -> str | None:
        if v is not None and not _QUANTITY.fullmatch(v):
            raise ValueError(f"{v!r} is not a Kubernetes quantity; write e.g. 500m, 2, 512Mi or 4Gi")
        return v

    def as_k8s(self) -> dict:
        requests = {"cpu": self.cpu_request, "memory": self.memory_request}
        limits = {k: v for k, v in (("cpu", self.cpu_limit), ("memory", self.memory_limit)) if v}
        return {"requests": requests, **({"limits": limits} if limits else {})}


def _worker_resources() -> Resources:
    # A Celery worker forks a supervisor and a task process per slot (see airflow-facts.md:
    # 350-650 MiB at concurrency 8 for trivial tasks), so it gets more than the other components.
    return Resources(cpu_request="1", memory_request="2Gi", memory_limit="4Gi")


class SecretNames(_Model):
    """Names of the Secrets the user creates; the rendering refers to them, never to values."""

    metadata: str = Field(
        "airscale-metadata-db",
        description="Secret with key 'connection': the metadata database URL "
        "(postgresql://user:password@host:port/db). With PgBouncer, point it at the PgBouncer "
        "service (<release>-pgbouncer.<namespace>:6543/<release>-metadata).",
    )
    broker: str = Field(
        "airscale-broker",
        description="Secret with key 'connection': the Celery broker URL (redis://:password@host:6379/0).",
    )
    redis_password: str = Field(
        "airscale-redis-password",
        description="Secret with key 'password': password of the chart's Redis (same as in the broker URL).",
    )
    fernet_key: str = Field("airscale-fernet-key", description="Secret with key 'fernet-key': Airflow's Fernet key.")
    api_secret_key: str = Field(
        "airscale-api-secret-key", description="Secret with key 'api-secret-key': [api] secret_key."
    )
    jwt_secret: str = Field(
        "airscale-jwt-secret",
        description="Secret with key 'jwt-secret': [api_auth] jwt_secret, at least 64 bytes.",
    )
    pgbouncer_config: str = Field(
        "airscale-pgbouncer-config",
        description="Secret with keys 'pgbouncer.ini' and 'users.txt' for the chart's PgBouncer.",
    )
    pgbouncer_stats: str = Field(
        "airscale-pgbouncer-stats",
        description="Secret with key 'connection': URL of PgBouncer's admin database for its exporter.",
    )
    postgres_exporter: str = Field(
        "airscale-postgres-exporter",
        description="Secret with key 'connection': libpq URL postgres_exporter reads PostgreSQL's "
        "statistics with (postgresql://user:password@host:5432/db?sslmode=...); a role with "
        "pg_monitor, connecting to PostgreSQL itself rather than PgBouncer.",
    )
    alertmanager: str = Field(
        "airscale-alertmanager",
        description="Secret with key 'alertmanager.yaml': the Alertmanager configuration "
        "(receivers hold webhook URLs and tokens, so it is a Secret).",
    )

    @field_validator("*")
    @classmethod
    def _dns(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", v):
            raise ValueError(f"{v!r} is not a valid Secret name (lower case letters, digits, '-' and '.')")
        return v


class KubernetesSpec(_Model):
    namespace: str = Field(
        "airflow", pattern=DNS_LABEL, description="Namespace everything is rendered into."
    )
    release: str = Field(
        "airflow",
        pattern=DNS_LABEL,
        description="Helm release name of the Apache Airflow chart; the chart names its objects "
        "<release>-<component> (the workers: <release>-worker), which KEDA and RBAC refer to.",
    )
    image_repository: str = Field(
        "apache/airflow", pattern=IMAGE_REPOSITORY, description="Airflow image with your DAGs' dependencies (repository)."
    )
    image_tag: str = Field("3.3.2", pattern=IMAGE_TAG, description="Airflow image tag; keep it equal to the Airflow version.")
    airscale_image: str = Field(
        "ghcr.io/airscale/airscale:0.1.0", pattern=IMAGE,
        description="Image with airscale installed, for the exporter and autoscaler Deployments.",
    )
    postgres_exporter_image: str = Field(
        "quay.io/prometheuscommunity/postgres-exporter:v0.15.0", pattern=IMAGE,
        description="postgres_exporter image (PostgreSQL connections and settings for the alert rules).",
    )
    redis_exporter_image: str = Field(
        "oliver006/redis_exporter:v1.62.0", pattern=IMAGE,
        description="redis_exporter image (the Celery broker's memory, clients, uptime).",
    )
    storage_class: str | None = Field(
        None, pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", description="StorageClass for persistent volumes (logs, Redis); empty for the cluster default."
    )
    worker_resources: Resources = Field(
        default_factory=_worker_resources, description="Requests and limits of each Celery worker (or task pod)."
    )
    scheduler_resources: Resources = Field(
        default_factory=Resources, description="Requests and limits of each scheduler."
    )
    dags_git_repo: str | None = Field(
        None, pattern=GIT_REPO,
        description="Git repository the chart's git-sync sidecar pulls DAGs from; empty: DAGs are "
        "baked into the image.",
    )
    dags_git_branch: str = Field("main", pattern=GIT_REF, description="Branch git-sync follows.")
    prometheus_url: HttpUrl = Field(
        "http://prometheus-operated.monitoring.svc:9090",
        description="Prometheus that scrapes the autoscaler; KEDA's Prometheus scaler queries it.",
    )
    monitoring_namespace: str = Field(
        "monitoring",
        pattern=DNS_LABEL,
        description="Namespace of Prometheus: NetworkPolicies let it (and only it) scrape metrics.",
    )
    keda_namespace: str = Field(
        "keda",
        pattern=DNS_LABEL,
        description="Namespace of the KEDA operator: NetworkPolicies let it reach PgBouncer for the "
        "SQL fallback trigger.",
    )
    prometheus_rule_labels: Labels = Field(
        default_factory=lambda: {"release": "kube-prometheus-stack"},
        description="Labels that make your Prometheus pick up the PrometheusRule (its ruleSelector).",
    )
    service_monitor_labels: Labels = Field(
        default_factory=lambda: {"release": "kube-prometheus-stack"},
        description="Labels that make your Prometheus pick up the ServiceMonitors (its serviceMonitorSelector).",
    )
    grafana_dashboard_label: str = Field(
        "grafana_dashboard", pattern=LABEL_KEY,
        description="Label the Grafana dashboard sidecar watches ConfigMaps for (value '1').",
    )
    secrets: SecretNames = Field(
        default_factory=SecretNames, description="Names of the Secrets you create (see SECRETS.md)."
    )
