"""High availability as a capability of the local runtime (airscale.runtime.capability).

- `ha.database`: PostgreSQL primary + standby under Patroni, etcd and HAProxy take the place of
  the plain PostgreSQL (`airscale.ha.database`); their health is the member's role and lag.
- The reclaimer gives a killed worker's unacknowledged messages back to the queue in seconds
  (`airscale.ha.reclaim`), with the embedded broker.
"""

from __future__ import annotations

from collections.abc import Sequence

from airscale.ha import database
from airscale.ha.components import reclaimer_component
from airscale.runtime import postgres
from airscale.runtime.capability import Capability
from airscale.runtime.component import Component
from airscale.runtime.layout import Layout
from airscale.runtime.secrets import Secrets
from airscale.spec import Spec


class HighAvailability(Capability):
    name = "ha"
    health_kinds = frozenset({"patroni", "etcd"})

    def runs_database(self, spec: Spec) -> bool:
        return spec.database.url is None and spec.ha.database.enabled

    def components(self, spec: Spec, layout: Layout, base: Sequence[Component]) -> list[Component]:
        out = database.components(spec, layout, None) if self.runs_database(spec) else []
        if spec.uses_celery and spec.broker.url is None and spec.spec_file is not None:
            out.append(reclaimer_component(spec))
        return out

    def prepare(self, spec: Spec, layout: Layout, secrets: Secrets) -> None:
        if self.runs_database(spec):
            database.prepare(spec, layout, secrets, postgres.find_bin_dir(spec))

    def health(self, spec: Spec, layout: Layout, component: Component) -> tuple[bool, str]:
        if component.kind == "patroni":
            return database.node_health(spec, component.name)
        return database.etcd_health(spec)
