"""Scheduled backups as a capability of the local runtime: the `backup` component runs
`airscale backup` on the spec's schedule with retention (airscale.backup.schedule)."""

from __future__ import annotations

from collections.abc import Sequence

from airscale.backup.schedule import backup_component, wanted
from airscale.runtime.capability import Capability
from airscale.runtime.component import Component
from airscale.runtime.layout import Layout
from airscale.spec import Spec


class Backups(Capability):
    name = "backup"

    def components(self, spec: Spec, layout: Layout, base: Sequence[Component]) -> list[Component]:
        return [backup_component(spec)] if wanted(spec) else []
