"""Helm values of the official Apache Airflow chart, and the airflow.cfg it renders (pure).

The chart runs Airflow: the main release (`helm_values`) runs every component and the workers
of the first queue, and each other queue gets a worker-only release of the same chart
(`worker_release_values`: scheduler, api-server, triggerer, dag-processor, Redis, PgBouncer,
statsd and the migration job off) that uses the main release's broker, PgBouncer and Execution API
through the same Secrets. Worker persistence is off so the chart renders a Deployment, not a
StatefulSet: pod-deletion-cost only steers ReplicaSets (workers.py).

No function here reads a secret: Secrets are referred to by name (spec.kubernetes.secrets),
and keys of `airflow_config` that look like credentials are left out (see `SECRET_KEY_PATTERN`).
"""

from __future__ import annotations

import re
from typing import Any

from airscale.auth.capability import Authentication
from airscale.observe.settings import statsd_settings
from airscale.spec import Spec
from airscale.spec.kubernetes import KubernetesSpec

from .naming import CELERY, DRAIN_HOOK_CONFIGMAP, DRAIN_MOUNT, EXECUTORS, EXPORTER
from .ports import API_SERVER_PORT, EXPORTER_STATSD_PORT
from .workers import (
    QUEUE_LABEL,
    WorkerSet,
    drain_command,
    grace_period,
    worker_args,
    worker_sets,
)

AIRFLOW_VERSION = "3.3.2"
# airflow_config keys that may hold credentials: never copied into rendered files.
SECRET_KEY_PATTERN = re.compile(r"(password|passwd|secret|token|credential|_key$|^key$|conn|url|dsn|backend)", re.I)


def airflow_version(k: KubernetesSpec) -> str:
    # The chart compares airflowVersion with semverCompare, so it must be a plain version even
    # when the image tag is not (a digest or "3.3.2-python3.11").
    m = re.match(r"^(\d+\.\d+\.\d+)", k.image_tag)
    return m.group(1) if m else AIRFLOW_VERSION


def safe_airflow_config(spec: Spec) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The spec's airflow_config without keys that may hold credentials, and the keys dropped."""
    kept: dict[str, dict[str, Any]] = {}
    dropped: list[str] = []
    for section, values in spec.airflow_config.items():
        for key, value in values.items():
            if SECRET_KEY_PATTERN.search(key) or section in ("secrets",):
                dropped.append(f"{section}.{key}")
            else:
                kept.setdefault(section, {})[key] = value
    return kept, dropped


# -- Helm values ---------------------------------------------------------------------------------
def exporter_statsd_settings(spec: Spec) -> dict[str, Any]:
    """Airflow's statsd to the airscale exporter's Service, as on a local cluster.

    The exporter receives statsd locally too (observe/exporter.py) and turns it into the names
    the rules and dashboards read (docs/metrics.md): pointing Airflow at it, with the chart's
    statsd-exporter off, gives Kubernetes the same metrics from the same code, where the
    chart's statsd-exporter would name them its own way. The one difference: no
    `stat_name_handler` (it imports airscale, which the chart's Airflow images do not
    carry), so the metrics have no `component` label.
    """
    return statsd_settings(spec, host=f"{EXPORTER}.{spec.kubernetes.namespace}.svc", port=EXPORTER_STATSD_PORT,
                           component_tag=False)


def airflow_config(spec: Spec, executor: str, ws: WorkerSet | None = None) -> dict[str, dict[str, Any]]:
    """`config` of the chart: what airscale derives, then the spec's (safe) overrides.

    `ws`: the worker set of a worker-only release; its airflow.cfg points at the main
    release's Execution API (the chart would derive it from the release name).

    `[metrics]`: statsd goes to airscale's exporter (`exporter_statsd_settings`), in every release.
    """
    config: dict[str, dict[str, Any]] = {
        "core": {"load_examples": "False"},
        # Several schedulers need row-level locking (SELECT ... FOR UPDATE SKIP LOCKED).
        "scheduler": {"use_row_level_locking": "True"},
        "metrics": exporter_statsd_settings(spec),
        # New DAG files would otherwise wait up to 300 s to be noticed.
        "dag_processor": {"refresh_interval": 30},
        "operators": {"default_queue": next(iter(spec.queues))},
    }
    if executor == CELERY:
        config["celery"] = {"worker_concurrency": (ws or worker_sets(spec)[0]).concurrency}
    # The auth manager the spec chooses (FAB by default), as on the local cluster.
    for section, values in Authentication().airflow_settings(spec).items():
        config.setdefault(section, {}).update(values)
    if ws is not None:
        config["core"]["execution_api_server_url"] = execution_api_url(spec)
    overrides, _ = safe_airflow_config(spec)
    for section, values in overrides.items():
        config.setdefault(section, {}).update(values)
    # The chart's schema wants scalars: booleans become Airflow's spelling.
    return {s: {k: (("True" if v else "False") if isinstance(v, bool) else v) for k, v in vals.items()}
            for s, vals in config.items()}


def helm_values(spec: Spec, executor: str = CELERY) -> dict[str, Any]:
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}")
    k = spec.kubernetes
    s = k.secrets
    celery = executor == CELERY
    external_redis = spec.broker.url is not None
    storage = {"storageClassName": k.storage_class} if k.storage_class else {}
    values: dict[str, Any] = {
        "executor": "CeleryExecutor" if celery else "KubernetesExecutor",
        "airflowVersion": airflow_version(k),
        "defaultAirflowRepository": k.image_repository,
        "defaultAirflowTag": k.image_tag,
        "images": {"airflow": {"repository": k.image_repository, "tag": k.image_tag}},
        # Secrets by reference only; SECRETS.md lists the keys.
        "fernetKeySecretName": s.fernet_key,
        "apiSecretKeySecretName": s.api_secret_key,
        "jwtSecretName": s.jwt_secret,
        "data": {"metadataSecretName": s.metadata},
        # The chart's bundled PostgreSQL is for trying the chart out; bring a real database.
        "postgresql": {"enabled": False},
        "pgbouncer": {
            "enabled": True,
            "configSecretName": s.pgbouncer_config,
            # Each scheduler holds a few connections; api-server, triggerer, dag-processor too.
            "metadataPoolSize": max(10, 3 * spec.schedulers.count + 4),
            "resultBackendPoolSize": 5,
            "maxClientConn": 100,
            "metricsExporterSidecar": {"statsSecretName": s.pgbouncer_stats, "statsSecretKey": "connection"},
        },
        # Airflow's statsd goes to airscale's exporter instead (exporter_statsd_settings).
        "statsd": {"enabled": False},
        "scheduler": {
            "replicas": spec.schedulers.count,
            "resources": k.scheduler_resources.as_k8s(),
            "podDisruptionBudget": {"enabled": spec.schedulers.count > 1, "config": {"maxUnavailable": 1}},
        },
        # The chart's default user has the literal password "admin" (under webserver for
        # Airflow 2, apiServer for 3): create users yourself.
        "webserver": {"defaultUser": {"enabled": False}},
        # As many api-server pods as the local cluster runs instances (api_server.count): the
        # chart's Service spreads over them as HAProxy does locally.
        "apiServer": {"replicas": spec.api_server.count, "defaultUser": {"enabled": False},
                      "podDisruptionBudget": {"enabled": spec.api_server.count > 1,
                                              "config": {"maxUnavailable": 1}}},
        "networkPolicies": {"enabled": True},
        "config": airflow_config(spec, executor),
        "workers": {
            "resources": k.worker_resources.as_k8s(),
            "terminationGracePeriodSeconds": grace_period(spec),
            "safeToEvict": False,
        },
    }
    if celery:
        ws = worker_sets(spec)[0]
        values["data"]["brokerUrlSecretName"] = s.broker
        values["redis"] = {"enabled": not external_redis}
        if not external_redis:
            values["redis"].update({"passwordSecretName": s.redis_password, "persistence": {"enabled": True, **storage}})
        values["workers"].update({
            # The chart writes this count into the Deployment unless its own KEDA object is on,
            # and `helm upgrade` resets the live count to it. At the maximum an upgrade can only
            # add idle workers (removed again after the HPA's stabilization window), never
            # take workers away from running tasks.
            "replicas": ws.max_workers,
            "args": worker_args(ws),
            # The autoscaler tells a pod's queue by this label (and KEDA's target by release).
            "labels": {QUEUE_LABEL: ws.queues[0]},
            # A Deployment (not a StatefulSet): pod-deletion-cost only steers ReplicaSets.
            "persistence": {"enabled": False},
            # KEDA is rendered by airscale (keda.yaml): the chart's ScaledObject has only the SQL trigger.
            "keda": {"enabled": False},
            "containerLifecycleHooks": {"preStop": {"exec": {"command": drain_command(spec)}}},
            "extraVolumes": [{"name": "airscale-drain-hook", "configMap": {"name": DRAIN_HOOK_CONFIGMAP}}],
            "extraVolumeMounts": [{"name": "airscale-drain-hook", "mountPath": DRAIN_MOUNT, "readOnly": True}],
        })
    else:
        values["redis"] = {"enabled": False}
    if k.storage_class:
        values["logs"] = {"persistence": {"storageClassName": k.storage_class}}
    if k.dags_git_repo:
        values["dags"] = {"gitSync": {"enabled": True, "repo": k.dags_git_repo, "branch": k.dags_git_branch}}
    return values


def execution_api_url(spec: Spec) -> str:
    """The main release's Execution API (Airflow 3 workers report task state through it)."""
    return f"http://{spec.kubernetes.release}-api-server:{API_SERVER_PORT}/execution/"


# Components a worker-only release turns off: the main release runs them once for all queues.
WORKER_RELEASE_OFF = ("scheduler", "triggerer", "dagProcessor", "webserver", "postgresql", "redis", "pgbouncer",
                      "statsd", "migrateDatabaseJob", "flower", "cleanup")


def worker_release_values(spec: Spec, ws: WorkerSet) -> dict[str, Any]:
    """Helm values of a worker-only release of the chart for one queue's workers.

    Same image, Secrets (metadata DB through the main release's PgBouncer, broker, Fernet key,
    JWT secret), airflow.cfg, resources, grace period and drain hook as the main release's
    workers; every other component is off. This chart release has no `apiServer.enabled`
    (the api-server is rendered for any Airflow 3), so it gets 0 replicas; the create-user job
    only runs with a default user, which stays off.
    """
    main = helm_values(spec, CELERY)
    keep = ("executor", "airflowVersion", "defaultAirflowRepository", "defaultAirflowTag", "images",
            "fernetKeySecretName", "apiSecretKeySecretName", "jwtSecretName", "data", "networkPolicies", "logs", "dags")
    values: dict[str, Any] = {key: main[key] for key in keep if key in main}
    values.update({name: {"enabled": False} for name in WORKER_RELEASE_OFF})
    values["webserver"]["defaultUser"] = {"enabled": False}
    values["apiServer"] = {"replicas": 0, "defaultUser": {"enabled": False}}
    values["config"] = airflow_config(spec, CELERY, ws)
    values["workers"] = {
        **main["workers"],
        "replicas": ws.max_workers,
        "args": worker_args(ws),
        "labels": {QUEUE_LABEL: ws.queues[0]},
        # airflow.cfg says the same; the env var also wins over any default the chart derives
        # from this release's own (absent) api-server.
        "env": [{"name": "AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "value": execution_api_url(spec)}],
    }
    return values


def worker_release_values_files(spec: Spec) -> dict[str, dict[str, Any]]:
    """values-<queue>.yaml for every queue but the first (served by the main release)."""
    return {ws.values_file: worker_release_values(spec, ws) for ws in worker_sets(spec)[1:]}
