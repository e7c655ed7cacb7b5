"""Integration-test workload: 24 short tasks in layers (1 -> 10 -> 1 -> 11 -> 1), so that
schedulers make many scheduling decisions per run."""

from __future__ import annotations

import time

import pendulum
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, max_active_runs=8)
def it_layers():
    @task
    def step(i: int) -> int:
        time.sleep(0.5)
        return i

    start = step.override(task_id="start")(0)
    mid = step.override(task_id="mid")(1)
    end = step.override(task_id="end")(2)
    start >> [step.override(task_id=f"a_{i:02d}")(i) for i in range(10)] >> mid
    mid >> [step.override(task_id=f"b_{i:02d}")(i) for i in range(11)] >> end


it_layers()
