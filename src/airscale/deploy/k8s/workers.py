"""Celery worker sets: which Helm release's worker Deployment serves which queue (pure).

Each queue has its own workers, scaled on its own. The chart release this was written against
(values.schema.json in tests/data/helm-chart) has a single Celery worker Deployment per
release, so the main release's workers consume the first (default) queue, and every other
queue gets a second, worker-only release of the same chart (values.py
`worker_release_values`), which uses the main release's broker, PgBouncer, exporter and
Execution API through the same Secrets. KEDA then has one ScaledObject per queue (keda.py).

Scale-down safety: the HPA, not the chart, picks which worker pod dies (apache/airflow
#26587, #41163). The autoscaler (`airscale autoscale --kubernetes`, autoscale/in_cluster.py)
gives busy worker pods a high `controller.kubernetes.io/pod-deletion-cost` so the ReplicaSet
removes idle pods first; a preStop hook (deploy/drain_hook.py) makes a pod that is removed
anyway stop consuming and wait for its running tasks.
"""

from __future__ import annotations

from dataclasses import dataclass

from airscale.errors import AirscaleError
from airscale.spec import Spec
from airscale.spec.kubernetes import KubernetesSpec

from .naming import DRAIN_MOUNT

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
# Label on every worker pod naming the queue it consumes; the autoscaler reads a pod's queue
# from it (autoscale/in_cluster.py QUEUE_LABEL, kept equal by a test).
QUEUE_LABEL = "airscale.io/queue"
# Helm refuses longer release names.
HELM_RELEASE_MAX = 53
# Margin between the end of the drain wait and SIGKILL: Celery's warm shutdown of an idle
# worker and the task supervisor's last heartbeat take a few seconds.
GRACE_MARGIN_SECONDS = 60
# Celery node name of a worker pod. It must stay celery@<pod name>: the chart's liveness probe
# pings exactly that (`celery inspect ping -d celery@$(hostname)`), and the drain hook
# addresses the worker by it.
WORKER_NODE = '"celery@${HOSTNAME}"'


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


def worker_selector(spec: Spec) -> str:
    """Label selector of every Celery worker pod of the spec, over all its releases."""
    releases = ",".join(ws.release for ws in worker_sets(spec))
    return f"tier=airflow,component=worker,release in ({releases})"


def grace_period(spec: Spec) -> int:
    return spec.workers.drain_timeout + GRACE_MARGIN_SECONDS


def worker_args(ws: WorkerSet) -> list[str]:
    return [
        "bash", "-c",
        f"exec airflow celery worker --queues {','.join(ws.queues)} --concurrency {ws.concurrency} "
        f"--celery-hostname {WORKER_NODE}",
    ]


def drain_command(spec: Spec) -> list[str]:
    return ["bash", "-c", f"exec python {DRAIN_MOUNT}/drain_hook.py --timeout {spec.workers.drain_timeout} "
            f"--node {WORKER_NODE}"]
