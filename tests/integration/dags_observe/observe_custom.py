"""A task that publishes metrics of its own (airscale.task_metrics), as a DAG author would."""

import pendulum
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def observe_custom():
    @task
    def load() -> None:
        from airscale import task_metrics

        task_metrics.counter("rows_loaded", 120, table="orders")
        task_metrics.counter("rows_loaded", 30, table="orders")
        task_metrics.gauge("backlog_files", 7, source="s3")
        task_metrics.histogram("batch_seconds", 0.3)

    load()


observe_custom()
