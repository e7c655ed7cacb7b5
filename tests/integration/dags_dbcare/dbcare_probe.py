"""test_dbcare's DAG: two no-op tasks, triggered by hand and then cleaned away."""

import pendulum
from airflow.sdk import dag, task


@task
def noop():
    return None


@dag(dag_id="dbcare_probe", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def probe():
    a = noop.override(task_id="a")()
    b = noop.override(task_id="b")()
    a >> b


probe()
