"""KEDA objects that scale each queue's Celery workers (pure).

KEDA's Prometheus scaler reads the desired worker count the airscale autoscaler exports
(`airscale_autoscaler_desired_workers{queue}`), and the chart's own SQL query stays as a
second trigger, so the workers still follow the queue when the autoscaler or Prometheus is
down (the HPA takes the highest trigger and does not scale down while a trigger fails). The
Prometheus trigger reads an absent series as 0 (`ignoreNullValues`): then the SQL trigger
alone counts, instead of the ScaledObject erroring until the autoscaler is scraped.
"""

from __future__ import annotations

from typing import Any

from airscale.tuning.autoscaling import Measured, derive
from airscale.spec import Spec

from .naming import meta
from .workers import WorkerSet, worker_sets

DESIRED_METRIC = "airscale_autoscaler_desired_workers"


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
        "metadata": meta("airscale-metadata-db", k, "keda"),
        "spec": {"secretTargetRef": [{"parameter": "connection", "name": k.secrets.metadata, "key": "connection"}]},
    }


HPA_WINDOW_S = 300.0


def scaled_objects(spec: Spec) -> list[dict[str, Any]]:
    k = spec.kubernetes
    a = spec.autoscaling
    derived = derive(spec, Measured())  # nothing measured in the cluster yet: assumed figures
    interval = derived.value("interval")
    # The HPA deletes pods on scale-down (the idle ones first, by deletion cost): unlike the
    # local drain-first scale-down, a short window can cost a task, so its 300 s stays the
    # default there.
    window = a.stabilization_window if a.stabilization_window is not None else HPA_WINDOW_S
    step = int(derived.value("scale_up_max_step"))
    out = []
    for ws in worker_sets(spec):
        out.append({
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": meta(ws.name, k, "keda", annotations={"airscale.io/queues": ",".join(ws.queues)}),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": ws.deployment},
                "pollingInterval": max(1, round(interval)),
                "cooldownPeriod": max(30, round(window)),
                "minReplicaCount": 0 if a.scale_to_zero else ws.min_workers,
                "maxReplicaCount": ws.max_workers,
                "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {
                    # The SQL trigger has no stabilization of its own: the HPA's window keeps
                    # it from removing workers between two waves of tasks.
                    "scaleDown": {"stabilizationWindowSeconds": min(3600, round(window)),
                                  "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]},
                    "scaleUp": {"stabilizationWindowSeconds": 0,
                                "policies": [{"type": "Pods", "value": step, "periodSeconds": 15}]},
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
                            # An absent series (autoscaler down or not yet scraped) reads 0,
                            # so the SQL trigger alone sets the count and KEDA reports no
                            # error; AutoscalerSignalMissing says so. An unreachable
                            # Prometheus is still an error, and the HPA does not scale down
                            # on a failing trigger.
                            "ignoreNullValues": "true",
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
