"""The capabilities of a cluster, assembled: the one place that knows them all.

The runtime calls capabilities through `airscale.runtime.capability.Capability` and imports
none of them; the commands (CLI, drills, benchmarks, remote workers) open a cluster here. The
order is the order of the hooks: monitoring last, because its exporter lists every other
component.
"""

from __future__ import annotations

from airscale.auth.capability import Authentication
from airscale.autoscale.capability import Autoscaling
from airscale.backup.capability import Backups
from airscale.dbcare.capability import DatabaseCare
from airscale.ha.capability import HighAvailability
from airscale.observe.capability import Monitoring
from airscale.runtime.capability import Capability
from airscale.runtime.cluster import Cluster
from airscale.spec import Spec

CAPABILITIES: tuple[Capability, ...] = (
    HighAvailability(), Authentication(), DatabaseCare(), Backups(), Autoscaling(), Monitoring())


def open_cluster(spec: Spec) -> Cluster:
    """The local cluster of `spec`, with every capability."""
    return Cluster(spec, CAPABILITIES)
