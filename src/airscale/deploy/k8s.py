"""Kubernetes objects and Helm values derived from the spec (pure: dicts in, dicts out).

airscale does not run its own controllers on Kubernetes: it hands the spec to the engines that
already exist there.

- The official Apache Airflow Helm chart runs Airflow (values from `helm_values`).
- KEDA scales the Celery workers (`scaled_objects`): its Prometheus scaler reads the desired
  worker count the airscale autoscaler exports (`airscale_autoscaler_desired_workers{queue}`),
  and the chart's own SQL query stays as a second trigger, so the workers still follow the
  queue when the autoscaler or Prometheus is down (the HPA takes the highest trigger and does
  not scale down while a trigger fails).
- Scale-down safety: the HPA, not the chart, picks which worker pod dies (apache/airflow
  #26587, #41163). The autoscaler (`airscale autoscale --kubernetes`, autoscale/in_cluster.py)
  gives busy worker pods a high `controller.kubernetes.io/pod-deletion-cost` so the ReplicaSet
  removes idle pods first; a preStop hook (`drain_hook.py`) makes a pod that is removed anyway
  stop consuming and wait for its running tasks. Deletion cost only works on ReplicaSets, which
  is why worker persistence is turned off (the chart then renders a Deployment, not a
  StatefulSet).

Each queue has its own workers, scaled on its own. The chart release this was written against
(values.schema.json in tests/data/helm-chart) has a single Celery worker Deployment per
release, so the main release's workers consume the first (default) queue, and every other
queue gets a second, worker-only release of the same chart (`worker_release_values`:
scheduler, api-server, triggerer, dag-processor, Redis, PgBouncer, statsd and the migration
job off), which uses the main release's broker, PgBouncer, statsd and Execution API through
the same Secrets. KEDA then has one ScaledObject per queue.

No function here reads a secret: Secrets are referred to by name (spec.kubernetes.secrets),
and keys of `airflow_config` that look like credentials are left out (see `SECRET_KEY_PATTERN`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import yaml

from airscale.errors import AirscaleError
from airscale.spec import Spec
from airscale.spec.kubernetes import KubernetesSpec

AIRFLOW_VERSION = "3.3.2"
DESIRED_METRIC = "airscale_autoscaler_desired_workers"
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
# Label on every worker pod naming the queue it consumes; the autoscaler reads a pod's queue
# from it (autoscale/in_cluster.py QUEUE_LABEL, kept equal by a test).
QUEUE_LABEL = "airscale.io/queue"
# Helm refuses longer release names.
HELM_RELEASE_MAX = 53
AUTOSCALER = "airscale-autoscaler"
EXPORTER = "airscale-exporter"
DRAIN_HOOK_CONFIGMAP = "airscale-drain-hook"
SPEC_CONFIGMAP = "airscale-spec"
SPEC_MOUNT = "/etc/airscale"
DRAIN_MOUNT = "/opt/airscale"
# Margin between the end of the drain wait and SIGKILL: Celery's warm shutdown of an idle
# worker and the task supervisor's last heartbeat take a few seconds.
GRACE_MARGIN_SECONDS = 60
# Ports of the chart's components (chart defaults; `ports` in values.yaml).
PGBOUNCER_PORT = 6543
REDIS_PORT = 6379
STATSD_SCRAPE_PORT = 9102
STATSD_INGEST_PORT = 9125
API_SERVER_PORT = 8080
WORKER_LOGS_PORT = 8793

# airflow_config keys that may hold credentials: never copied into rendered files.
SECRET_KEY_PATTERN = re.compile(r"(password|passwd|secret|token|credential|_key$|^key$|conn|url|dsn|backend)", re.I)

CELERY = "celery"
KUBERNETES = "kubernetes"
EXECUTORS = (CELERY, KUBERNETES)


@dataclass(frozen=True)
class WorkerSet:
    """Celery workers that KEDA scales as one Deployment."""

    name: str  # name of the ScaledObject
    deployment: str  # the Deployment KEDA scales
    queues: tuple[str, ...]
    concurrency: int
    min_workers: int
    max_workers: int
    release: str  # the Helm release whose worker Deployment this is
    main: bool  # the main release (everything else runs there too), or a worker-only one

    @property
    def values_file(self) -> str:
        """File of the release's Helm values."""
        return "values.yaml" if self.main else f"values-{self.queues[0]}.yaml"


# -- helpers -----------------------------------------------------------------------------------
def _labels(component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": component,
        "app.kubernetes.io/part-of": "airscale",
        "app.kubernetes.io/managed-by": "airscale",
    }


def _meta(name: str, k: KubernetesSpec, component: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": k.namespace, "labels": _labels(component), **extra}


def chart_worker_labels(k: KubernetesSpec) -> dict[str, str]:
    """Labels the chart puts on Celery worker pods (templates/workers/worker-deployment.yaml)."""
    return {"tier": "airflow", "component": "worker", "release": k.release}


def worker_selector(spec: Spec) -> str:
    """Label selector of every Celery worker pod of the spec, over all its releases."""
    releases = ",".join(ws.release for ws in worker_sets(spec))
    return f"tier=airflow,component=worker,release in ({releases})"


def chart_component_labels(k: KubernetesSpec, component: str) -> dict[str, str]:
    return {"tier": "airflow", "component": component, "release": k.release}


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


# -- worker sets ---------------------------------------------------------------------------------
def queue_release(k: KubernetesSpec, queue: str) -> str:
    # "-q-" keeps the name clear of the chart's own <release>-<component> objects (a queue
    # called "statsd" must not become a release whose objects collide with the main one's).
    return f"{k.release}-q-{queue}"


def worker_sets(spec: Spec) -> list[WorkerSet]:
    """One set per queue, each its own worker Deployment scaled on its own.

    The chart renders one worker Deployment per release: the first queue (the default queue,
    `operators.default_queue`) is served by the main release's workers, every other queue by
    the workers of its own worker-only release `<release>-q-<queue>`.
    """
    k = spec.kubernetes
    out = []
    for i, (name, q) in enumerate(spec.queues.items()):
        release = k.release if i == 0 else queue_release(k, name)
        if len(release) > HELM_RELEASE_MAX:
            raise AirscaleError(
                f"queue {name!r} would need the Helm release name {release!r}, longer than Helm's "
                f"{HELM_RELEASE_MAX} characters",
                f"shorten kubernetes.release or the queue name (queues.{name})",
            )
        out.append(WorkerSet(
            name=f"{release}-worker", deployment=f"{release}-worker", queues=(name,),
            concurrency=q.concurrency, min_workers=q.min_workers, max_workers=q.max_workers, release=release,
            main=i == 0,
        ))
    return out


def grace_period(spec: Spec) -> int:
    return spec.workers.drain_timeout + GRACE_MARGIN_SECONDS


# Celery node name of a worker pod. It must stay celery@<pod name>: the chart's liveness probe
# pings exactly that (`celery inspect ping -d celery@$(hostname)`), and the drain hook
# addresses the worker by it.
WORKER_NODE = '"celery@${HOSTNAME}"'


def worker_args(ws: WorkerSet) -> list[str]:
    return [
        "bash", "-c",
        f"exec airflow celery worker --queues {','.join(ws.queues)} --concurrency {ws.concurrency} "
        f"--celery-hostname {WORKER_NODE}",
    ]


def drain_command(spec: Spec) -> list[str]:
    return ["bash", "-c", f"exec python {DRAIN_MOUNT}/drain_hook.py --timeout {spec.workers.drain_timeout} "
            f"--node {WORKER_NODE}"]


# -- Helm values ---------------------------------------------------------------------------------
def airflow_config(spec: Spec, executor: str, ws: WorkerSet | None = None) -> dict[str, dict[str, Any]]:
    """`config` of the chart: what airscale derives, then the spec's (safe) overrides.

    `ws`: the worker set of a worker-only release; its airflow.cfg points at the main
    release's statsd and Execution API (the chart would derive both from the release name).
    """
    config: dict[str, dict[str, Any]] = {
        "core": {"load_examples": "False"},
        # Several schedulers need row-level locking (SELECT ... FOR UPDATE SKIP LOCKED).
        "scheduler": {"use_row_level_locking": "True"},
        "metrics": {"statsd_on": "True"},
        # New DAG files would otherwise wait up to 300 s to be noticed.
        "dag_processor": {"refresh_interval": 30},
        "operators": {"default_queue": next(iter(spec.queues))},
    }
    if executor == CELERY:
        config["celery"] = {"worker_concurrency": (ws or worker_sets(spec)[0]).concurrency}
    if ws is not None:
        main = spec.kubernetes.release
        config["metrics"].update({"statsd_host": f"{main}-statsd", "statsd_port": STATSD_INGEST_PORT})
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
        "statsd": {"enabled": True},
        "scheduler": {
            "replicas": spec.schedulers.count,
            "resources": k.scheduler_resources.as_k8s(),
            "podDisruptionBudget": {"enabled": spec.schedulers.count > 1, "config": {"maxUnavailable": 1}},
        },
        # The chart's default user has the literal password "admin" (under webserver for
        # Airflow 2, apiServer for 3): create users yourself.
        "webserver": {"defaultUser": {"enabled": False}},
        "apiServer": {"defaultUser": {"enabled": False}},
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


# -- KEDA ----------------------------------------------------------------------------------------
def desired_workers_query(ws: WorkerSet) -> str:
    queues = "|".join(ws.queues)  # names match ^[a-z][a-z0-9-]*$: nothing to escape
    return f'sum({DESIRED_METRIC}{{queue=~"{queues}"}})'


def chart_sql_query(ws: WorkerSet) -> str:
    """The chart's KEDA query (values.yaml workers.keda.query), limited to the set's queues."""
    queues = ", ".join(f"'{q}'" for q in ws.queues)  # names match ^[a-z][a-z0-9-]*$: no quoting issue
    return (f"SELECT ceil(COUNT(*)::decimal / {ws.concurrency}) FROM task_instance "
            f"WHERE (state='running' OR state='queued') AND queue IN ({queues})")


def trigger_authentication(spec: Spec) -> dict[str, Any]:
    k = spec.kubernetes
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": _meta("airscale-metadata-db", k, "keda"),
        "spec": {"secretTargetRef": [{"parameter": "connection", "name": k.secrets.metadata, "key": "connection"}]},
    }


def scaled_objects(spec: Spec) -> list[dict[str, Any]]:
    k = spec.kubernetes
    a = spec.autoscaling
    out = []
    for ws in worker_sets(spec):
        out.append({
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": _meta(ws.name, k, "keda", annotations={"airscale.io/queues": ",".join(ws.queues)}),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": ws.deployment},
                "pollingInterval": max(1, round(a.interval)),
                "cooldownPeriod": max(30, round(a.stabilization_window)),
                "minReplicaCount": 0 if a.scale_to_zero else ws.min_workers,
                "maxReplicaCount": ws.max_workers,
                "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {
                    # The SQL trigger has no stabilization of its own: the HPA's window keeps
                    # it from removing workers between two waves of tasks.
                    "scaleDown": {"stabilizationWindowSeconds": min(3600, round(a.stabilization_window)),
                                  "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]},
                    "scaleUp": {"stabilizationWindowSeconds": 0,
                                "policies": [{"type": "Pods", "value": a.scale_up_max_step, "periodSeconds": 15}]},
                }}},
                "triggers": [
                    {
                        "type": "prometheus",
                        "name": "airscale-desired-workers",
                        "metricType": "AverageValue",
                        "metadata": {
                            "serverAddress": k.prometheus_url,
                            "query": desired_workers_query(ws),
                            # AverageValue 1: replicas = the desired count itself.
                            "threshold": "1",
                            # A missing series is an error, not 0: the HPA then keeps the
                            # workers instead of scaling them down on a lost signal.
                            "ignoreNullValues": "false",
                        },
                    },
                    {
                        "type": "postgresql",
                        "name": "chart-sql-fallback",
                        "metricType": "AverageValue",
                        "metadata": {"query": chart_sql_query(ws), "targetQueryValue": "1"},
                        "authenticationRef": {"name": "airscale-metadata-db"},
                    },
                ],
            },
        })
    return out


# -- airscale's own Deployments ------------------------------------------------------------------
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
        "metadata": _meta(SPEC_CONFIGMAP, k, "airscale"),
        "data": {"airscale.yaml": yaml.safe_dump(pod_spec_config(spec), sort_keys=False)},
    }


def drain_hook_configmap(spec: Spec, script: str) -> dict[str, Any]:
    k = spec.kubernetes
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(DRAIN_HOOK_CONFIGMAP, k, "airscale"),
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
    labels = {**_labels(name), "tier": "airscale", "release": k.release}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, k, name),
        "spec": {
            "replicas": 1,
            # Two autoscalers would write deletion costs over each other: never run two at once.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": _labels(name)},
            "template": {
                "metadata": {
                    "labels": labels,
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
        "metadata": _meta(name, k, name),
        "spec": {"selector": _labels(name),
                 "ports": [{"name": "metrics", "port": port, "targetPort": "metrics", "protocol": "TCP"}]},
    }


def _service_account(spec: Spec, name: str, automount: bool) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name, spec.kubernetes, name),
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
            "metadata": _meta(AUTOSCALER, k, AUTOSCALER,
                              annotations={"airscale.io/why": f"annotate busy Celery worker pods with {DELETION_COST}"}),
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "patch"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta(AUTOSCALER, k, AUTOSCALER),
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


# -- monitoring ----------------------------------------------------------------------------------
def heartbeat_for(spec: Spec) -> str:
    """How long no scheduler may beat: the spec's monitoring threshold when the spec has one,
    else Astronomer's 6 minutes."""
    thresholds = getattr(getattr(spec, "monitoring", None), "thresholds", None)
    stale = getattr(thresholds, "scheduler_heartbeat_stale_seconds", None)
    return f"{stale}s" if stale else "6m"


def alert_rules(spec: Spec, executor: str = CELERY) -> list[dict[str, Any]]:
    """Rule groups derived from the spec. The observability work adds its own groups later."""
    silent = heartbeat_for(spec)
    groups = [{
        "name": "airscale-airflow",
        "rules": [{
            # Astronomer's scheduler rule: no heartbeat from any scheduler for a while.
            "alert": "AirflowSchedulerHeartbeatMissing",
            "expr": "(sum(rate(airflow_scheduler_heartbeat[1m])) or vector(0)) == 0",
            "for": silent,
            "labels": {"severity": "critical"},
            "annotations": {"summary": f"No Airflow scheduler heartbeat for {silent}",
                            "description": f"None of the {spec.schedulers.count} scheduler(s) of "
                                           f"{spec.cluster.name} sent a heartbeat: no task is being scheduled."},
        }],
    }]
    if executor == CELERY:
        rules: list[dict[str, Any]] = [{
            "alert": "AirscaleDesiredWorkersMissing",
            "expr": f"absent({DESIRED_METRIC})",
            "for": "10m",
            "labels": {"severity": "warning"},
            "annotations": {"summary": "The airscale autoscaler exports no desired worker count",
                            "description": "KEDA scales the workers on the chart's SQL query only: no "
                                           "pre-warming, and busy pods are not protected by deletion cost."},
        }]
        for name, q in spec.queues.items():
            rules.append({
                "alert": "AirscaleQueueAtMaxWorkers",
                "expr": f'max({DESIRED_METRIC}{{queue="{name}"}}) >= {q.max_workers}',
                "for": "15m",
                "labels": {"severity": "warning", "queue": name},
                "annotations": {"summary": f"Queue {name} has wanted its maximum of {q.max_workers} workers for 15m",
                                "description": f"Raise queues.{name}.max_workers or expect tasks to wait."},
            })
        groups.append({"name": "airscale-autoscaler", "rules": rules})
    return groups


def prometheus_rule(spec: Spec, executor: str = CELERY) -> dict[str, Any]:
    k = spec.kubernetes
    meta = _meta("airscale", k, "airscale")
    meta["labels"] = {**meta["labels"], **k.prometheus_rule_labels}
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": meta,
            "spec": {"groups": alert_rules(spec, executor)}}


def dashboard(spec: Spec) -> dict[str, Any]:
    """A placeholder Grafana dashboard: desired workers per queue and scheduler heartbeats."""
    def panel(pid: int, title: str, expr: str, legend: str, y: int) -> dict[str, Any]:
        return {"id": pid, "type": "timeseries", "title": title,
                "gridPos": {"x": 0, "y": y, "w": 24, "h": 8},
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "targets": [{"refId": "A", "expr": expr, "legendFormat": legend}]}

    return {
        "title": f"airscale: {spec.cluster.name}",
        "uid": f"airscale-{spec.cluster.name}"[:40],
        "schemaVersion": 39,
        "tags": ["airscale", "airflow"],
        "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus"}]},
        "panels": [
            panel(1, "Desired Celery workers per queue", f"sum by (queue) ({DESIRED_METRIC})", "{{queue}}", 0),
            panel(2, "Scheduler heartbeats per second", "sum(rate(airflow_scheduler_heartbeat[1m]))", "heartbeats", 8),
        ],
    }


def grafana_configmap(spec: Spec) -> dict[str, Any]:
    k = spec.kubernetes
    meta = _meta("airscale-dashboard", k, "airscale")
    meta["labels"] = {**meta["labels"], k.grafana_dashboard_label: "1"}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
            "data": {"airscale.json": json.dumps(dashboard(spec), indent=1)}}


# -- NetworkPolicies -----------------------------------------------------------------------------
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
        "metadata": _meta(name, k, "airscale"),
        "spec": {"podSelector": pod_selector, "policyTypes": ["Ingress"],
                 "ingress": [{"from": peers, "ports": [{"protocol": protocol, "port": port}]}]},
    }


def _release_pods(releases: list[str], component: str | None = None) -> dict[str, Any]:
    """Label selector of the chart's pods in some releases (all components, or one)."""
    labels = {"tier": "airflow", **({"component": component} if component else {})}
    return {"matchLabels": labels,
            "matchExpressions": [{"key": "release", "operator": "In", "values": releases}]}


def network_policies(spec: Spec, executor: str = CELERY) -> list[dict[str, Any]]:
    """Ingress rules for airscale's pods, and the holes they need in the chart's own policies.

    The chart (networkPolicies.enabled) lets only its own release's components reach Redis,
    PgBouncer and statsd, and admits nothing to the api-server unless
    `apiServer.networkPolicy.ingress.from` lists peers; policies add up, so these open exactly
    the extra paths: airscale's pods to PgBouncer and Redis, KEDA to PgBouncer (SQL trigger),
    Prometheus to the metrics ports, Airflow's pods to the Execution API (Airflow 3 workers
    report task state through it), and, for the worker-only releases of the other queues,
    their workers to the main release's PgBouncer, Redis, statsd and Execution API and the
    main api-server to their log servers.
    """
    k = spec.kubernetes
    ports = spec.ports
    prom = [_ns(k.monitoring_namespace)]
    airscale_pods = {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "airscale"}}}
    extra = [ws.release for ws in worker_sets(spec)[1:]] if executor == CELERY else []
    extra_workers = [{"podSelector": _release_pods(extra, "worker")}] if extra else []
    pols = [
        _ingress_policy(spec, EXPORTER, _labels(EXPORTER), prom, ports.exporter),
        _ingress_policy(spec, "airscale-to-pgbouncer", chart_component_labels(k, "pgbouncer"),
                        [airscale_pods] + ([_ns(k.keda_namespace)] if executor == CELERY else []) + extra_workers,
                        PGBOUNCER_PORT),
        _ingress_policy(spec, "airscale-statsd-scrape", chart_component_labels(k, "statsd"), prom, STATSD_SCRAPE_PORT),
        _ingress_policy(spec, "airscale-execution-api", chart_component_labels(k, "api-server"),
                        [{"podSelector": _release_pods([k.release, *extra])}], API_SERVER_PORT),
    ]
    if executor == CELERY:
        pols.append(_ingress_policy(spec, AUTOSCALER, _labels(AUTOSCALER), prom, ports.autoscaler_metrics))
        if spec.broker.url is None:
            pols.append(_ingress_policy(spec, "airscale-to-redis", chart_component_labels(k, "redis"),
                                        [airscale_pods] + extra_workers, REDIS_PORT))
    if extra:
        pols += [
            _ingress_policy(spec, "airscale-queue-workers-to-statsd", chart_component_labels(k, "statsd"),
                            extra_workers, STATSD_INGEST_PORT, protocol="UDP"),
            # Task logs: the main api-server fetches them from each worker's log server.
            _ingress_policy(spec, "airscale-queue-worker-logs", _release_pods(extra, "worker"),
                            [{"podSelector": {"matchLabels": chart_component_labels(k, "api-server")}}],
                            WORKER_LOGS_PORT),
        ]
    return pols


# -- Secrets -------------------------------------------------------------------------------------
def required_secrets(spec: Spec, executor: str = CELERY) -> list[tuple[str, list[str], str]]:
    """(Secret name, keys, what goes in it) for every Secret the rendering refers to."""
    s = spec.kubernetes.secrets
    out = [
        (s.metadata, ["connection"], "metadata DB URL, postgresql://USER:PASSWORD@"
         f"{spec.kubernetes.release}-pgbouncer.{spec.kubernetes.namespace}:6543/{spec.kubernetes.release}-metadata"
         "?sslmode=disable (through PgBouncer); also read by KEDA's SQL trigger and airscale's pods"),
        (s.fernet_key, ["fernet-key"], "Fernet key: python -c 'from cryptography.fernet import Fernet; "
         "print(Fernet.generate_key().decode())'"),
        (s.api_secret_key, ["api-secret-key"], "random string, e.g. openssl rand -hex 32"),
        (s.jwt_secret, ["jwt-secret"], "random string of at least 64 bytes, e.g. openssl rand -hex 64"),
        (s.pgbouncer_config, ["pgbouncer.ini", "users.txt"], "PgBouncer configuration: databases "
         f"{spec.kubernetes.release}-metadata pointing at your PostgreSQL, and the user list"),
        (s.pgbouncer_stats, ["connection"], "postgresql://USER:PASSWORD@127.0.0.1:6543/pgbouncer?sslmode=disable"),
        (s.alertmanager, ["alertmanager.yaml"], "Alertmanager configuration (receivers with their "
         "URLs and tokens); give its name to your Alertmanager (kube-prometheus-stack: "
         "alertmanager.alertmanagerSpec.configSecret)"),
    ]
    if executor == CELERY:
        out.insert(1, (s.broker, ["connection"], "Celery broker URL, redis://:PASSWORD@"
                       f"{spec.kubernetes.release}-redis:6379/0 with the chart's Redis"))
        if spec.broker.url is None:
            out.insert(2, (s.redis_password, ["password"], "the PASSWORD of the broker URL"))
    return out
