"""The drill's workload: a DAG of short tasks, installed into the cluster's DAG folder.

Its tasks sleep a few seconds and never fail by themselves, so any failed or retried try in
a drill is the fault's. It sets no `retries`: the cluster's default (spec `ha.task_retries`)
is what a drill tests.
"""

from __future__ import annotations

from pathlib import Path

DAG_ID = "airscale_drill"
LAYERS = 3
WIDTH = 4
TASKS_PER_RUN = LAYERS * WIDTH
FILE_NAME = "airscale_drill.py"

DAG_SOURCE = f'''"""Workload of `airscale drill` (written by airscale; safe to delete)."""
import time

import pendulum
from airflow.sdk import dag, get_current_context, task


@task
def step():
    time.sleep(float(get_current_context()["dag_run"].conf.get("seconds", 3)))


@dag(dag_id="{DAG_ID}", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
     catchup=False, max_active_runs=32, tags=["airscale"])
def airscale_drill():
    prev = None
    for layer in range({LAYERS}):
        tasks = [step.override(task_id=f"l{{layer}}_t{{i}}")() for i in range({WIDTH})]
        if prev:
            for a in prev:
                a >> tasks
        prev = tasks


airscale_drill()
'''


def install(dags_folder: Path) -> bool:
    """Write the DAG file if it is missing or different; True when written."""
    path = dags_folder / FILE_NAME
    if path.exists() and path.read_text() == DAG_SOURCE:
        return False
    path.write_text(DAG_SOURCE)
    return True
