"""Database care as a capability of the local runtime: the `db-cleaner` component runs
`airscale db clean` on the spec's schedule (airscale.dbcare.schedule)."""

from __future__ import annotations

from collections.abc import Sequence

from airscale.dbcare.schedule import cleaner_component, wanted
from airscale.runtime.capability import Capability
from airscale.runtime.component import Component
from airscale.runtime.layout import Layout
from airscale.spec import Spec


class DatabaseCare(Capability):
    name = "dbcare"

    def components(self, spec: Spec, layout: Layout, base: Sequence[Component]) -> list[Component]:
        return [cleaner_component(spec)] if wanted(spec) else []
