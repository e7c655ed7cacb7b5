"""Alert rules and the Grafana dashboard (pure)."""

from __future__ import annotations

import json
from typing import Any

from airscale.spec import Spec

from .keda import DESIRED_METRIC
from .naming import CELERY, meta


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
    obj_meta = meta("airscale", k, "airscale")
    obj_meta["labels"] = {**obj_meta["labels"], **k.prometheus_rule_labels}
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": obj_meta,
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
    obj_meta = meta("airscale-dashboard", k, "airscale")
    obj_meta["labels"] = {**obj_meta["labels"], k.grafana_dashboard_label: "1"}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj_meta,
            "data": {"airscale.json": json.dumps(dashboard(spec), indent=1)}}
