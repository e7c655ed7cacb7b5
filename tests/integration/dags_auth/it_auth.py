"""test_auth's DAGs: people trigger them; they stay paused, so their runs only wait in the queue.
it_auth_other is the DAG a custom role may read but not trigger."""

from datetime import datetime

from airflow.sdk import dag, task


def _paused_noop(dag_id: str):
    @dag(dag_id=dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False)
    def noop_dag():
        @task
        def noop():
            return None

        noop()

    return noop_dag()


it_auth = _paused_noop("it_auth")
it_auth_other = _paused_noop("it_auth_other")
