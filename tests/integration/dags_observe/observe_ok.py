"""A small successful DAG: gives the exporter task, run and duration metrics to show."""

import pendulum
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def observe_ok():
    @task
    def one() -> int:
        return 1

    @task
    def add(x: int) -> int:
        return x + 1

    add(one())


observe_ok()
