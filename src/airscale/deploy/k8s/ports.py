"""Every port of the Kubernetes rendering, in one place.

Kubernetes ports do not come from the local port block (`spec.ports`, `cluster.base_port`):
each pod has its own network namespace, so nothing collides, and Prometheus, NetworkPolicies
and Airflow's statsd client find a component at the same well-known port in every
installation. airscale's pods use the ports conventional for what they serve (the Prometheus
exporter port allocations: statsd_exporter 9102 and 9125/UDP, redis_exporter 9121,
postgres_exporter 9187); the chart's ports are the chart's defaults (`ports` in its
values.yaml). A test checks that none of them falls into a spec's local block.
"""

from __future__ import annotations

# airscale's exporter: Prometheus metrics, and Airflow's statsd in (UDP), like statsd_exporter.
EXPORTER_METRICS_PORT = 9102
EXPORTER_STATSD_PORT = 9125
# airscale's autoscaler metrics (airscale_autoscaler_*): its own port, next to the exporter's.
AUTOSCALER_METRICS_PORT = 9103
POSTGRES_EXPORTER_PORT = 9187
REDIS_EXPORTER_PORT = 9121

# The chart's components.
PGBOUNCER_PORT = 6543
REDIS_PORT = 6379
API_SERVER_PORT = 8080
WORKER_LOGS_PORT = 8793
