"""Scale-down safety on Kubernetes: busy Celery worker pods get a high pod-deletion-cost.

On Kubernetes KEDA's HPA sets the worker Deployment's replica count, and the ReplicaSet picks
which pod goes. Among pods that are equally ready it removes the one with the lowest
`controller.kubernetes.io/pod-deletion-cost` annotation first (a missing annotation counts
as 0). Left alone every worker pod costs 0 and the choice is arbitrary, which is how busy
Airflow workers get killed on a scale-down (apache/airflow #26587, #41163). So each autoscaler
iteration writes cost = active tasks x `COST_PER_TASK` on every worker pod whose count it
knows: an idle pod costs 0, a pod running three tasks 300, and the ReplicaSet removes idle
pods first. The preStop drain hook (deploy/drain_hook.py) still protects a busy pod that goes
anyway (a scale-down bigger than the idle pods).

`desired_costs()` decides (pure, table-tested); `PodAnnotator` is the only code that talks
to the API server: it lists the worker pods by label selector and patches one annotation
with a strategic merge patch, only where the value changes (a patch per pod per iteration
would load the API server and wake every pod watcher for nothing).

What the writer deliberately leaves alone:
- a pod whose Celery worker did not answer (still starting, or stuck): lowering a busy pod's
  cost on a lost reply would expose it, and a starting pod is not ready, so the ReplicaSet
  removes it before any ready pod anyway;
- a terminating pod (deletionTimestamp set): it is already going, its preStop hook drains it.

Kubernetes reads the annotation as an int32 and ignores the annotation when it does not parse
(the pod then counts as 0), hence `MAX_COST`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
# Cost of one running task. Any positive weight orders the pods the same way; 100 leaves room
# for finer grades later (e.g. reserved tasks, or the age of the oldest task) without
# changing what the existing values mean.
COST_PER_TASK = 100
MAX_COST = 2**31 - 1  # the annotation is an int32
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"


@dataclass(frozen=True)
class WorkerPod:
    """What the writer needs to know of one worker pod."""

    name: str  # pod name; its Celery node is celery@<name> (the chart's liveness probe relies on it)
    annotation: str | None = None  # current pod-deletion-cost annotation, verbatim (None: absent)
    terminating: bool = False  # metadata.deletionTimestamp is set
    labels: Mapping[str, str] | None = None


@dataclass(frozen=True)
class CostPatch:
    pod: str
    cost: int
    previous: str | None  # the annotation before the patch
    active: int  # active tasks behind the cost


def cost_of(active: int, weight: int = COST_PER_TASK) -> int:
    return max(0, min(MAX_COST, active * weight))


def desired_costs(
    pods: Sequence[WorkerPod], active: Mapping[str, int | None], weight: int = COST_PER_TASK
) -> list[CostPatch]:
    """The annotation patches that make every answering worker pod cost its active tasks.

    `active` maps a pod name to the active task count its Celery worker reported (None or
    absent: no answer). Only pods whose annotation would change get a patch; an absent
    annotation already means 0, so an idle pod that was never annotated gets none.
    """
    out = []
    for pod in sorted(pods, key=lambda p: p.name):
        n = active.get(pod.name)
        if pod.terminating or n is None:
            continue
        cost = cost_of(n, weight)
        current = pod.annotation if pod.annotation is not None else "0"
        if current.strip() == str(cost):
            continue
        out.append(CostPatch(pod.name, cost, pod.annotation, n))
    return out


def patch_body(cost: int) -> dict[str, Any]:
    return {"metadata": {"annotations": {DELETION_COST: str(cost)}}}


def pod_of(obj: Any) -> WorkerPod:
    """A WorkerPod from a V1Pod of the kubernetes client."""
    meta = obj.metadata
    return WorkerPod(
        name=meta.name,
        annotation=(meta.annotations or {}).get(DELETION_COST),
        terminating=meta.deletion_timestamp is not None,
        labels=dict(meta.labels or {}),
    )


class PodAnnotator:
    """Lists the worker pods and writes their deletion cost (the I/O side).

    `core_v1` is a `kubernetes.client.CoreV1Api`; in a pod, `in_cluster()` builds one from the
    ServiceAccount token the autoscaler Deployment mounts (its Role allows get, list and patch
    on pods in its namespace, nothing else).
    """

    def __init__(self, core_v1: Any, namespace: str, selector: str, weight: int = COST_PER_TASK):
        self.core_v1 = core_v1
        self.namespace = namespace
        self.selector = selector
        self.weight = weight

    @classmethod
    def in_cluster(cls, namespace: str, selector: str) -> PodAnnotator:
        from kubernetes import client, config

        config.load_incluster_config()
        return cls(client.CoreV1Api(), namespace, selector)

    def pods(self) -> list[WorkerPod]:
        listing = self.core_v1.list_namespaced_pod(self.namespace, label_selector=self.selector)
        return [pod_of(p) for p in listing.items]

    def patch(self, p: CostPatch) -> None:
        # The generated client would pick application/json-patch+json for a PATCH (the first
        # JSON type it lists), which wants a list of operations: say which patch this is.
        self.core_v1.patch_namespaced_pod(
            p.pod, self.namespace, patch_body(p.cost), _content_type=STRATEGIC_MERGE_PATCH
        )

    def write(self, pods: Sequence[WorkerPod], active: Mapping[str, int | None]) -> list[CostPatch]:
        """Apply the patches `desired_costs` asks for; a pod deleted meanwhile (404) is skipped."""
        from kubernetes.client.exceptions import ApiException

        done = []
        for p in desired_costs(pods, active, self.weight):
            try:
                self.patch(p)
            except ApiException as e:
                if e.status == 404:  # scaled away between the list and the patch: nothing to protect
                    log.debug("pod %s is gone; no deletion cost to write", p.pod)
                    continue
                raise
            log.info("pod %s: %s=%d (%d active task(s), was %s)", p.pod, DELETION_COST, p.cost, p.active,
                     p.previous if p.previous is not None else "unset")
            done.append(p)
        return done

    def sync(self, active: Mapping[str, int | None]) -> list[CostPatch]:
        """List the pods, then write what changed."""
        return self.write(self.pods(), active)
