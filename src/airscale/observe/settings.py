"""Whether a cluster runs its monitoring stack, and what Airflow needs to feed it (pure)."""

from __future__ import annotations

from typing import Any

from airscale.spec import Spec


def monitoring_active(spec: Spec) -> bool:
    """On by default in the `scale` profile; `monitoring.enabled` decides when set."""
    enabled = spec.monitoring.enabled
    return spec.uses_celery if enabled is None else enabled


def statsd_settings(spec: Spec, host: str | None = None, port: int | None = None,
                    component_tag: bool = True) -> dict[str, Any]:
    """Airflow's `[metrics]` section: statsd to the airscale exporter, with tags.

    `host`/`port`: where the exporter receives statsd (default: the local cluster's address;
    the Kubernetes rendering gives its exporter Service). `component_tag`: the name handler
    needs airscale importable in every Airflow process, which the chart's images are not.

    Airflow 3.3.2 puts tags (dag_id, task_id, queue, pool_name, state) on the wire only in
    InfluxDB style (`name,k=v:1|c`) or DogStatsD; InfluxDB style is a plain statsd line the
    exporter parses without a DogStatsD dependency. Legacy names embed dag and task ids in the
    metric name (1449 distinct names from a few small DAGs): off. The name handler adds the
    component (`scheduler-2`), so gauges of two schedulers don't overwrite each other.
    job_id and run_id stay out of the tags (Airflow's default), as they are unbounded.
    """
    settings: dict[str, Any] = {
        "statsd_on": True,
        "statsd_host": host or spec.client_host,
        "statsd_port": port or spec.ports.statsd,
        "statsd_prefix": "airflow",
        "statsd_influxdb_enabled": True,
        "legacy_names_on": False,
        "statsd_disabled_tags": "job_id,run_id",
    }
    if component_tag:
        settings["stat_name_handler"] = "airscale.observe.statname.add_component"
    return settings
