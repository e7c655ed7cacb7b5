"""The autoscaler's Prometheus metrics (registry injectable, so tests read a fresh one).

`airscale_autoscaler_desired_workers` is also the number a Kubernetes deployment hands to
KEDA's Prometheus scaler: the decision is made here, once, whatever runs the workers.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PREFIX = "airscale_autoscaler"


class AutoscalerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.desired = Gauge(f"{PREFIX}_desired_workers", "Workers the autoscaler wants per queue.",
                             ["queue"], registry=r)
        self.actual = Gauge(f"{PREFIX}_actual_workers",
                            "Workers serving the queue (running or starting, not draining).", ["queue"], registry=r)
        self.draining = Gauge(f"{PREFIX}_draining_workers", "Workers finishing their tasks before a stop.",
                              ["queue"], registry=r)
        self.draining_tasks = Gauge(f"{PREFIX}_draining_tasks",
                                    "Tasks active or reserved on draining workers.", ["queue"], registry=r)
        self.demand = Gauge(f"{PREFIX}_demand_tasks", "Tasks queued or running (the policy's input).",
                            ["queue"], registry=r)
        self.forecast = Gauge(f"{PREFIX}_forecast_tasks", "Tasks of DAG runs due within the look-ahead.",
                              ["queue"], registry=r)
        self.memory_held = Gauge(
            f"{PREFIX}_memory_held", "1 while the queue wants workers the machine's memory cannot take "
            "(reason MemoryHeadroom), else 0.", ["queue"], registry=r)
        self.decisions = Counter(f"{PREFIX}_decisions", "Decisions by reason.", ["queue", "reason"], registry=r)
        self.stops = Counter(f"{PREFIX}_worker_stops", "Workers stopped, by outcome (drained, drain-timeout).",
                             ["queue", "outcome"], registry=r)
        self.drain_seconds = Histogram(
            f"{PREFIX}_drain_seconds", "Seconds from cancel_consumer to the worker's stop.", ["queue"],
            buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600), registry=r,
        )
        self.errors = Counter(f"{PREFIX}_iteration_errors", "Loop iterations that failed.", registry=r)
        self.last_success = Gauge(f"{PREFIX}_last_success_timestamp_seconds",
                                  "Unix time of the last iteration that completed.", registry=r)
