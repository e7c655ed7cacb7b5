"""Parsed once by each Celery worker before its pool forks (airscale.runtime.worker_warmup); never run."""
import pendulum
from airflow.sdk import dag, task


@task
def step(n: int):
    return n


@dag(dag_id="airscale_worker_warmup", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
     catchup=False)
def airscale_worker_warmup():
    first = step.override(task_id="first")(0)
    first >> [step.override(task_id=f"next_{i}")(i) for i in range(2)]


airscale_worker_warmup()
