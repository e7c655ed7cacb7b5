"""How a capability plugs into the local runtime.

The runtime knows the core of a cluster: PostgreSQL, Redis, PgBouncer, the Airflow components
and the Celery workers. Monitoring, high availability, database care and the autoscaler stand
on it: they add processes, write configuration, prepare files before anything starts and read
the health of what they added. They do it through this one interface, which the runtime calls
and never looks behind, so the runtime imports no capability. The CLI layer
(`airscale.assembly`) assembles the list, in the order the hooks are called.

Every hook has a do-nothing default: a capability overrides what it contributes, and decides
from the spec whether it is on (a hook of a capability that is off returns nothing, and
`write_configs` may clean up what an earlier `up` wrote).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from airscale.runtime.component import Component
from airscale.runtime.layout import Layout
from airscale.runtime.secrets import Secrets
from airscale.spec import Spec


class Capability:
    """One capability of a cluster, as the local runtime sees it."""

    name: ClassVar[str] = ""
    # Component kinds whose health this capability reads (`health`).
    health_kinds: ClassVar[frozenset[str]] = frozenset()

    def runs_database(self, spec: Spec) -> bool:
        """True when this capability runs the embedded metadata database itself (the runtime
        then neither adds nor initialises a plain PostgreSQL)."""
        return False

    def components(self, spec: Spec, layout: Layout, base: Sequence[Component]) -> list[Component]:
        """The processes it adds (pure). `base`: every component added before it."""
        return []

    def ports(self, spec: Spec) -> dict[str, int]:
        """The ports its processes listen on, by what listens (pure): `up` checks that they are
        free before it starts a cluster."""
        return {}

    def airflow_settings(self, spec: Spec) -> dict[str, dict[str, Any]]:
        """Sections of airflow.cfg it sets, over what the runtime derives and under the plan
        and the spec's `airflow_config` (pure)."""
        return {}

    def write_configs(self, spec: Spec, layout: Layout, secrets: Secrets, comps: Sequence[Component]) -> None:
        """Write its configuration files; `up` calls it before the supervisor (re)reads its list."""

    def prepare(self, spec: Spec, layout: Layout, secrets: Secrets) -> None:
        """Side effects before the first stage starts (the supervisor already runs)."""

    def started(self, spec: Spec, layout: Layout, secrets: Secrets) -> None:
        """Side effects once every stage `up` starts is running and healthy."""

    def health(self, spec: Spec, layout: Layout, component: Component) -> tuple[bool, str]:
        """(healthy, detail) of one of its components whose kind is in `health_kinds`."""
        raise NotImplementedError(f"{type(self).__name__} reads no health of {component.kind!r}")


def settings_of(capabilities: Sequence[Capability], spec: Spec) -> dict[str, dict[str, Any]]:
    """Every capability's airflow.cfg sections, merged in assembly order."""
    out: dict[str, dict[str, Any]] = {}
    for cap in capabilities:
        for section, values in cap.airflow_settings(spec).items():
            out.setdefault(section, {}).update(values)
    return out
