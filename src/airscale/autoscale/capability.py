"""The autoscaler as a capability of the local runtime: one supervised `autoscaler` component
that loads the same spec file (the loader records its path) and runs `airscale.autoscale.loop`.
It starts after the workers and, stopping first on `down`, never restarts workers while they
are being stopped."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from airscale.runtime.capability import Capability
from airscale.runtime.component import AFTER_WORKERS_STAGE, BROKER, DATABASE, Component
from airscale.runtime.layout import Layout
from airscale.spec import Spec

AUTOSCALER = "autoscaler"


class Autoscaling(Capability):
    name = "autoscale"

    def components(self, spec: Spec, layout: Layout, base: Sequence[Component]) -> list[Component]:
        if not (spec.uses_celery and spec.autoscaling.enabled and spec.spec_file is not None):
            return []
        return [Component(
            AUTOSCALER, AUTOSCALER,
            (sys.executable, "-m", "airscale.autoscale.loop", "--spec", str(spec.spec_file)),
            stage=AFTER_WORKERS_STAGE, needs=(DATABASE, BROKER), reads=(spec.spec_file,),
        )]
