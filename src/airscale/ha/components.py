"""The supervised processes of the `ha` capability (derived from the spec, pure)."""

from __future__ import annotations

import sys

from airscale.runtime.components import Component
from airscale.spec import Spec

RECLAIMER = "reclaimer"


def reclaimer_component(spec: Spec) -> Component:
    assert spec.spec_file is not None
    return Component(
        RECLAIMER, RECLAIMER,
        (sys.executable, "-m", "airscale.ha.reclaim", "--spec", str(spec.spec_file)),
        # With the workers: it needs Redis and the supervisor, and stops before the workers do.
        stage=6,
    )
