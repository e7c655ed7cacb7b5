"""test_auth's DAG: people trigger it; it stays paused, so its runs only wait in the queue."""

from datetime import datetime

from airflow.sdk import dag, task


@dag(dag_id="it_auth", schedule=None, start_date=datetime(2026, 1, 1), catchup=False)
def it_auth():
    @task
    def noop():
        return None

    noop()


it_auth()
