"""The soak's injector: a fault whose target is missing at its planned time is tried again
(every second, up to TARGET_WAIT_S) instead of being dropped, without holding back the faults
planned after it."""

from __future__ import annotations

import time

from airscale.drills.scenarios import Fault
from airscale.soak import faults
from airscale.soak.schedule import PlannedFault


def test_a_fault_without_a_target_is_tried_again_and_others_go_ahead(monkeypatch):
    tries: dict[str, int] = {}

    def inject(cluster, p):
        tries[p.kind] = tries.get(p.kind, 0) + 1
        if p.kind == "worker" and tries[p.kind] < 3:
            return None  # no worker in the middle of a task yet
        return Fault(p.kind, time.time(), f"killed a {p.kind}", recovered=lambda: True)

    monkeypatch.setattr(faults, "inject", inject)
    planned = [PlannedFault(0.0, "worker", 0.5), PlannedFault(0.5, "scheduler", 0.5)]
    inj = faults.Injector(None, planned, t0=time.time()).start()
    deadline = time.time() + 10
    while len(inj.faults) < 2 and time.time() < deadline:
        time.sleep(0.1)
    done = inj.stop(wait_recovery_s=1)
    assert [f.kind for f in done] == ["scheduler", "worker"]  # the scheduler fault was not held back
    assert tries["worker"] == 3 and inj.skipped == []


def test_a_fault_without_a_target_for_the_whole_wait_is_reported(monkeypatch):
    monkeypatch.setattr(faults, "inject", lambda cluster, p: None)
    monkeypatch.setattr(faults, "TARGET_WAIT_S", 1.5)
    inj = faults.Injector(None, [PlannedFault(0.0, "worker", 0.5)], t0=time.time()).start()
    deadline = time.time() + 10
    while not inj.skipped and time.time() < deadline:
        time.sleep(0.1)
    inj.stop(wait_recovery_s=0)
    assert [(p.kind, why) for p, why in inj.skipped] == [("worker", "no target for 2s")]
