"""Where a cluster's monitoring runs, as far as alert rules and dashboards care (pure).

The rules (rules.py) and dashboards (dashboards.py) are written once and serve a cluster on
one machine and the same spec rendered for Kubernetes (deploy/k8s/monitoring.py builds the
Kubernetes environment; observe never imports deploy). What differs is named here, so a new
rule or panel lands in one place and both get it:

- `supervised`: supervisord runs the components, so the exporter can say which ones run
  (`airscale_component_up`), how often they were restarted and how many workers each queue
  has (SUPERVISOR_METRICS). On Kubernetes the kubelet restarts containers and the Prometheus
  Operator's own stack (kube-state-metrics) watches pods: rules and panels on these metrics
  are left out there rather than left without data.
- `workers_running`: the series of running Celery workers per queue: supervisord's count
  locally, the autoscaler's count of worker pods on Kubernetes.
- `up_selector`: which `up` series are this cluster's scrape targets. The local Prometheus
  scrapes nothing else; a shared Prometheus scrapes the whole Kubernetes cluster.
- `autoscaler`, `broker`: parts that run (the autoscaler's metrics; redis_exporter on the
  Celery broker).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from airscale.spec import Spec

# Metrics only the local cluster's exporter can produce: it reads them from supervisord.
SUPERVISOR_METRICS = ("airscale_component_up", "airscale_component_restarts_total", "airscale_workers_running",
                      # The data folder's disk, read beside supervisord (on Kubernetes the kubelet's
                      # kubelet_volume_stats_* cover volumes).
                      "airscale_data_disk_free_bytes", "airscale_data_disk_size_bytes",
                      # Scheduled backups run as a supervised component of the local cluster only.
                      "airscale_backup_last_success_timestamp_seconds")
BROKER_PREFIX = "redis_"
AUTOSCALER_PREFIX = "airscale_autoscaler_"
METRIC_NAME = re.compile(r"\b((?:airflow|airscale|pg|redis)_[a-z0-9_]+)")


@dataclass(frozen=True)
class Environment:
    name: str
    supervised: bool
    workers_running: str
    up_selector: str
    autoscaler: bool
    broker: bool
    # The Grafana data source the dashboards select by default: the one airscale provisions
    # locally, kube-prometheus-stack's on Kubernetes.
    datasource: str = "Prometheus"

    def lacks(self, query: str) -> bool:
        """Whether PromQL `query` reads a metric that nothing produces here: rules and panels
        on it are left out, so every one that remains has data."""
        names = set(METRIC_NAME.findall(query))
        return any((
            not self.supervised and bool(names & set(SUPERVISOR_METRICS)),
            not self.broker and any(n.startswith(BROKER_PREFIX) for n in names),
            not self.autoscaler and any(n.startswith(AUTOSCALER_PREFIX) for n in names),
        ))


def local_environment(spec: Spec) -> Environment:
    """A cluster run by `airscale up`, with its own Prometheus."""
    return Environment(
        name="local", supervised=True, workers_running="airscale_workers_running", up_selector="",
        autoscaler=spec.uses_celery and spec.autoscaling.enabled, broker=spec.uses_celery,
        datasource=local_datasource(spec),
    )


def local_datasource(spec: Spec) -> str:
    """Name and uid of the Grafana data source `airscale dashboards export` provisions."""
    return f"airscale-{spec.cluster.name}"
