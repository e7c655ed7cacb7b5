"""High availability as a capability of the local runtime (airscale.runtime.capability).

- `ha.database`: PostgreSQL primary + standby under Patroni, three etcd members and HAProxy take
  the place of the plain PostgreSQL (`airscale.ha.database`); a node's health is its role and
  lag, an etcd member's its own `/health`. Before the supervisor swaps the components of a
  running cluster (`write_configs`) and once it is up (`started`), Patroni's failsafe mode is
  made sure of: a cluster bootstrapped with one etcd member migrates to three in place.
- `ha.broker`: a Redis replica and three Sentinels join the runtime's Redis
  (`airscale.ha.broker`); a Sentinel's health is the primary it names and the others it sees.
- The reclaimer gives a killed worker's unacknowledged messages back to the queue in seconds
  (`airscale.ha.reclaim`), with the embedded broker.
"""

from __future__ import annotations

from collections.abc import Sequence

from airscale.ha import broker, database
from airscale.ha.components import reclaimer_component
from airscale.runtime import postgres
from airscale.runtime.broker import sentinel_on
from airscale.runtime.capability import Capability
from airscale.runtime.component import Component
from airscale.runtime.layout import Layout
from airscale.runtime.secrets import Secrets
from airscale.spec import Spec


class HighAvailability(Capability):
    name = "ha"
    health_kinds = frozenset({"patroni", "etcd", broker.SENTINEL_KIND})

    def runs_database(self, spec: Spec) -> bool:
        return spec.database.url is None and spec.ha.database.enabled

    def components(self, spec: Spec, layout: Layout, base: Sequence[Component]) -> list[Component]:
        out = database.components(spec, layout, None) if self.runs_database(spec) else []
        if sentinel_on(spec):
            out += broker.components(spec, layout)
        if spec.uses_celery and spec.broker.url is None and spec.spec_file is not None:
            out.append(reclaimer_component(spec))
        return out

    def ports(self, spec: Spec) -> dict[str, int]:
        out = database.ports(spec) if self.runs_database(spec) else {}
        return {**out, **(broker.ports(spec) if sentinel_on(spec) else {})}

    def write_configs(self, spec: Spec, layout: Layout, secrets: Secrets, comps: Sequence[Component]) -> None:
        if sentinel_on(spec):
            broker.write_configs(spec, layout, secrets)
        if self.runs_database(spec) and database.single_member_dcs(layout):
            # A running cluster with the single etcd member: failsafe mode first, while its DCS
            # still answers, so the primary stays writable when the supervisor replaces it.
            database.ensure_failsafe(spec, secrets, wait=database.failsafe_wait(spec))

    def prepare(self, spec: Spec, layout: Layout, secrets: Secrets) -> None:
        if self.runs_database(spec):
            database.prepare(spec, layout, secrets, postgres.find_bin_dir(spec))

    def started(self, spec: Spec, layout: Layout, secrets: Secrets) -> None:
        if self.runs_database(spec):
            database.after_start(spec, layout, secrets)

    def health(self, spec: Spec, layout: Layout, component: Component) -> tuple[bool, str]:
        if component.kind == broker.SENTINEL_KIND:
            from airscale.runtime.secrets import load

            return broker.sentinel_health(spec, load(layout.secrets_file), component.name)
        if component.kind == "patroni":
            return database.node_health(spec, component.name)
        return database.etcd_health(spec, database.etcd_member(component.name))
