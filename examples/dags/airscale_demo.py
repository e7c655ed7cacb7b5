"""The demo workload: a fan-out of 20 tasks over the default queue, then a report task on
the `reports` queue. Run it with `airscale trigger airscale_demo_fanout`."""

from __future__ import annotations

import random
import time

import pendulum
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["airscale-demo"])
def airscale_demo_fanout():
    @task
    def extract() -> list[int]:
        return list(range(20))

    @task
    def transform(i: int, batch: list[int]) -> int:
        time.sleep(random.uniform(0.5, 2.0))
        return batch[i] * batch[i]

    @task(queue="reports")
    def report(values: list[int]) -> int:
        total = sum(values)
        print(f"sum of squares: {total}")
        return total

    batch = extract()
    report([transform.override(task_id=f"transform_{i:02d}")(i, batch) for i in range(20)])


airscale_demo_fanout()
