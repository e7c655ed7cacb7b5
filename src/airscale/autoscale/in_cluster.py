"""The autoscaler inside Kubernetes (`airscale autoscale --kubernetes`): same decisions, KEDA acts.

The rendered autoscaler Deployment (deploy/k8s/objects.py) runs this. It is the loop of loop.py with
three parts swapped, and no controller of its own:

- signals: the metadata DB and the broker as on one machine (their URLs come from the
  environment, set from Secrets: AIRSCALE_DATABASE_URL, AIRSCALE_BROKER_URL), but the workers
  are the worker pods (label selector AIRSCALE_WORKER_SELECTOR in AIRSCALE_NAMESPACE), each
  asked through Celery's control API as node celery@<pod name>; a pod's queue is its
  `airscale.io/queue` label, which the rendered Helm values put on every worker pod;
- actuator: none. The decision is exported as `airscale_autoscaler_desired_workers{queue}` and
  KEDA's Prometheus scaler sets each queue's worker Deployment to it;
- after each iteration, `DeletionCostHook` writes each worker pod's deletion cost from the
  active task counts the iteration just read (deletion_cost.py), so a scale-down by the HPA
  removes idle pods first. A failed write is logged and counted
  (`airscale_autoscaler_deletion_cost_errors`), and does not fail the iteration: the desired
  count KEDA scales on matters more than the order of removal, and must not wait out a back-off.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import Counter

from airscale.autoscale.deletion_cost import PodAnnotator, WorkerPod, desired_costs
from airscale.autoscale.loop import Autoscaler
from airscale.autoscale.metrics import PREFIX, AutoscalerMetrics
from airscale.autoscale.plan import WorkerState, WorkerView
from airscale.autoscale.signals import NodeReport, QueueSnapshot, Signals, Snapshot
from airscale.errors import AirscaleError
from airscale.runtime.layout import Layout
from airscale.spec import Spec

log = logging.getLogger(__name__)

QUEUE_LABEL = "airscale.io/queue"
ENV_DATABASE_URL = "AIRSCALE_DATABASE_URL"
ENV_BROKER_URL = "AIRSCALE_BROKER_URL"
ENV_NAMESPACE = "AIRSCALE_NAMESPACE"
ENV_SELECTOR = "AIRSCALE_WORKER_SELECTOR"


def node_of(pod: str) -> str:
    """Celery node name of a worker pod (the chart's liveness probe pings celery@$(hostname))."""
    return f"celery@{pod}"


def with_urls(spec: Spec, env: Mapping[str, str]) -> Spec:
    """The pod's spec (its ConfigMap holds no URL) completed with the URLs from the Secrets."""
    missing = [n for n in (ENV_DATABASE_URL, ENV_BROKER_URL, ENV_NAMESPACE, ENV_SELECTOR) if not env.get(n)]
    if missing:
        raise AirscaleError(
            f"--kubernetes needs {', '.join(missing)} in the environment",
            "run it from the Deployment `airscale render k8s` writes (airscale.yaml), which sets them",
        )
    try:
        return spec.model_copy(update={
            "database": spec.database.model_validate({**spec.database.model_dump(), "url": env[ENV_DATABASE_URL]}),
            "broker": spec.broker.model_validate({**spec.broker.model_dump(), "url": env[ENV_BROKER_URL]}),
        })
    except ValueError as e:
        raise AirscaleError(
            f"{ENV_DATABASE_URL} or {ENV_BROKER_URL} is not a usable URL ({str(e).splitlines()[-1].strip()})",
            "put postgresql://... and redis://... URLs in the Secrets listed in SECRETS.md",
        ) from None


def worker_views(
    pods: Sequence[WorkerPod], reports: Mapping[str, NodeReport | None], queues: Sequence[str]
) -> dict[str, list[WorkerView]]:
    """Each queue's workers from its pods and their Celery answers, keyed by pod name (pure).

    A terminating pod is stopping; a pod that did not answer is starting (it counts as capacity,
    as KEDA counts it as a replica); an answering pod serves its queue unless it stopped
    consuming it (the preStop hook's cancel_consumer), then it is draining.
    """
    out: dict[str, list[WorkerView]] = {q: [] for q in queues}
    for pod in sorted(pods, key=lambda p: p.name):
        q = (pod.labels or {}).get(QUEUE_LABEL)
        if q not in out:
            continue  # not a worker of this spec (another release, or a label edited by hand)
        report = reports.get(pod.name)
        if pod.terminating:
            state = WorkerState.STOPPING
        elif report is None:
            state = WorkerState.STARTING
        else:
            state = WorkerState.SERVING if q in report.queues else WorkerState.DRAINING
        out[q].append(WorkerView(
            pod.name, q, len(out[q]) + 1, state,
            active=report.active if report else None, reserved=report.reserved if report else None,
        ))
    return out


class PodSignals(Signals):
    """Signals whose workers are pods; the DB and broker readings are the local ones."""

    def __init__(self, spec: Spec, annotator: PodAnnotator):
        # With both URLs in the spec, nothing reads the local cluster's secrets or supervisord.
        super().__init__(spec, None, None)  # type: ignore[arg-type]
        self.annotator = annotator
        self.last_pods: list[WorkerPod] = []

    def workers(self, infos: dict[str, dict] | None = None) -> dict[str, list[WorkerView]]:
        pods = self.annotator.pods()
        self.last_pods = pods
        live = [p.name for p in pods if not p.terminating]
        answers = self.inspect([node_of(p) for p in live])
        return worker_views(pods, {p: answers.get(node_of(p)) for p in live}, list(self.spec.queues))


class KedaActuator:
    """KEDA scales the Deployments; the loop only exports the desired count."""

    dry_run = False

    def progress(self, qs: QueueSnapshot) -> list:
        return []

    def apply(self, queue: str, actions: list, views: tuple = ()) -> list[str]:
        return []

    def undrain_all(self, queues: dict[str, QueueSnapshot]) -> None:
        return None


class DeletionCostHook:
    """Runs after each iteration: write the pods' deletion costs from the snapshot's counts."""

    def __init__(self, signals: PodSignals, annotator: PodAnnotator, metrics: AutoscalerMetrics,
                 dry_run: bool = False):
        self.signals = signals
        self.annotator = annotator
        self.dry_run = dry_run
        r = metrics.registry
        self.patches = Counter(f"{PREFIX}_deletion_cost_patches", "Worker pods whose deletion cost was written.",
                               registry=r)
        self.errors = Counter(f"{PREFIX}_deletion_cost_errors",
                              "Iterations whose deletion-cost writes failed (API server, RBAC).", registry=r)

    @staticmethod
    def active_counts(snap: Snapshot) -> dict[str, int | None]:
        return {w.name: w.active for qs in snap.queues.values() for w in qs.workers}

    def __call__(self, snap: Snapshot) -> None:
        active = self.active_counts(snap)
        if self.dry_run:
            for p in desired_costs(self.signals.last_pods, active, self.annotator.weight):
                log.info("would set pod %s deletion cost to %d (%d active)", p.pod, p.cost, p.active)
            return
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            done = self.annotator.write(self.signals.last_pods, active)
        except (ApiException, HTTPError, OSError) as e:
            self.errors.inc()
            log.warning("could not write worker pods' deletion cost (%s); the HPA may remove a busy pod, "
                        "whose preStop hook then drains it", str(e).splitlines()[0][:200])
            return
        self.patches.inc(len(done))


def build(spec: Spec, env: Mapping[str, str] | None = None, core_v1: Any = None, dry_run: bool = False,
          metrics: AutoscalerMetrics | None = None) -> Autoscaler:
    env = os.environ if env is None else env
    spec = with_urls(spec, env)
    namespace, selector = env[ENV_NAMESPACE], env[ENV_SELECTOR]
    if core_v1 is not None:
        annotator = PodAnnotator(core_v1, namespace, selector)
    else:
        from kubernetes.config import ConfigException

        try:
            annotator = PodAnnotator.in_cluster(namespace, selector)
        except ConfigException as e:
            raise AirscaleError(f"--kubernetes runs only inside a pod with a ServiceAccount token ({e})",
                                "run it from the rendered autoscaler Deployment, or drop --kubernetes") from None
    signals = PodSignals(spec, annotator)
    metrics = metrics or AutoscalerMetrics()
    actuator = KedaActuator()
    return Autoscaler(spec, signals, actuator, Layout(spec.data_path), metrics,  # type: ignore[arg-type]
                      after_iteration=DeletionCostHook(signals, annotator, metrics, dry_run=dry_run))
