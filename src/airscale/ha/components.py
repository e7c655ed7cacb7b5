"""The supervised processes of the `ha` capability (derived from the spec, pure)."""

from __future__ import annotations

from airscale.runtime.component import AFTER_WORKERS_STAGE, Component
from airscale.spec import Spec

RECLAIMER = "reclaimer"


def reclaimer_component(spec: Spec) -> Component:
    from airscale.runtime.daemon import spec_daemon_component

    # With the workers: it needs Redis and the supervisor, and stops before the workers do.
    return spec_daemon_component(RECLAIMER, "airscale.ha.reclaim", spec, stage=AFTER_WORKERS_STAGE)
