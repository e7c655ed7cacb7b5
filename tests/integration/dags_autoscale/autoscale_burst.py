"""Workloads of the autoscaling integration test.

`autoscale_burst`: one mapped task of `BURST_TASKS` instances that each sleep a few seconds,
the last one much longer, so that when the short ones are done a few long tasks are still
running on some of the workers the autoscaler is about to remove: the drain must wait for them.
Several runs at once are the burst. `autoscale_tomorrow`: a daily DAG whose first run is due
tomorrow, which the forecast must see without it ever running during the test.
"""

from __future__ import annotations

import time

import pendulum
from airflow.sdk import dag, task

BURST_TASKS = 40
SLEEP_S = 2.0
TAIL_SLEEP_S = 35.0


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     max_active_tasks=64, max_active_runs=8, tags=["airscale-test"])
def autoscale_burst():
    @task
    def work(i: int, dag_run=None) -> int:
        # A run's conf may shorten the tail (a test that needs the backlog, not the drain).
        tail_s = float((dag_run.conf or {}).get("tail_s", TAIL_SLEEP_S))
        time.sleep(tail_s if i == BURST_TASKS - 1 else SLEEP_S)
        return i

    work.expand(i=list(range(BURST_TASKS)))


@dag(schedule="@daily", start_date=pendulum.now("UTC").add(days=1).start_of("day"), catchup=False,
     tags=["airscale-test"])
def autoscale_tomorrow():
    @task
    def first() -> None:
        pass

    @task(queue="default")
    def second() -> None:
        pass

    first() >> second()


autoscale_burst()
autoscale_tomorrow()
