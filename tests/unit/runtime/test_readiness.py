"""When `up` counts a stage's member as ready (airscale.runtime.cluster.not_ready)."""

import pytest

from airscale.runtime.cluster import not_ready
from airscale.runtime.component import Component
from airscale.runtime.health import Health

SCHED = Component("scheduler-1", "scheduler", ("airflow",), 3)
RECLAIM = Component("reclaimer", "reclaimer", ("python",), 6)


@pytest.mark.parametrize(
    "state, health, expected",
    [
        # With a health check: ready once it passes, RUNNING or still STARTING.
        ("STARTING", Health(True, "heartbeat 1s ago"), {}),
        ("RUNNING", Health(True, "heartbeat 1s ago"), {}),
        ("STARTING", Health(False, "no heartbeat yet"), {"scheduler-1": "no heartbeat yet"}),
        ("RUNNING", Health(False, "heartbeat 90s ago"), {"scheduler-1": "heartbeat 90s ago"}),
        # A process that ended is not ready even if a stale check still passes.
        ("BACKOFF", Health(True, "heartbeat 1s ago"), {"scheduler-1": "process BACKOFF"}),
        ("EXITED", Health(True, "heartbeat 1s ago"), {"scheduler-1": "process EXITED"}),
        # No check: supervisord's RUNNING (past startsecs) is the only sign.
        ("STARTING", None, {"scheduler-1": "process STARTING"}),
        ("RUNNING", None, {}),
        (None, None, {"scheduler-1": "process None"}),
    ],
)
def test_readiness(state, health, expected):
    healths = {} if health is None else {"scheduler-1": health}
    assert not_ready([SCHED], {"scheduler-1": state}, healths) == expected


def test_each_member_is_judged_on_its_own():
    states = {"scheduler-1": "STARTING", "reclaimer": "STARTING"}
    healths = {"scheduler-1": Health(True, "ok")}
    assert not_ready([SCHED, RECLAIM], states, healths) == {"reclaimer": "process STARTING"}
