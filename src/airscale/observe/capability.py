"""Monitoring as a capability of the local runtime (airscale.observe.stack): Prometheus,
Alertmanager, the exporters and the alert receiver as components; Airflow's statsd pointed at
the airscale exporter; their configuration files and the task policy written by `up`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airscale.observe import stack
from airscale.observe.settings import monitoring_active, statsd_settings
from airscale.runtime.capability import Capability
from airscale.runtime.component import Component
from airscale.runtime.layout import Layout
from airscale.runtime.secrets import Secrets
from airscale.spec import Spec


class Monitoring(Capability):
    name = "observe"

    def components(self, spec: Spec, layout: Layout, base: Sequence[Component]) -> list[Component]:
        return stack.monitoring_components(spec, layout, list(base))

    def airflow_settings(self, spec: Spec) -> dict[str, dict[str, Any]]:
        return {"metrics": statsd_settings(spec)} if monitoring_active(spec) else {}

    def write_configs(self, spec: Spec, layout: Layout, secrets: Secrets, comps: Sequence[Component]) -> None:
        stack.write_configs(spec, layout, secrets, list(comps))
