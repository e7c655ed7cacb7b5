"""A DAG whose only task fails, with no retry: the TaskFailed alert must reach a person."""

import pendulum
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def observe_fail():
    @task(retries=0)
    def boom():
        raise RuntimeError("this task fails on purpose (airscale observe test)")

    boom()


observe_fail()
