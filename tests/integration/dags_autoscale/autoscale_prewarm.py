"""Workload of the autoscaler's pre-warm test: a DAG due every minute whose run needs more
workers than min_workers (8 tasks on workers of 4 slots), so the autoscaler must start a worker
before each run is queued. Plain tasks, not mapped ones: a serialized DAG counts a mapped task
once, and the forecast falls back to the serialized DAG before the first run.
Paused at creation; the test unpauses it and pauses it again when done.
"""

from __future__ import annotations

import time

import pendulum
from airflow.sdk import dag, task

PREWARM_TASKS = 8


@dag(schedule="* * * * *", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     max_active_runs=1, max_active_tasks=16, tags=["airscale-test"])
def autoscale_prewarm():
    @task
    def work() -> None:
        time.sleep(1.0)

    for i in range(PREWARM_TASKS):
        work.override(task_id=f"work_{i}")()


autoscale_prewarm()
