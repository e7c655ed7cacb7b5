"""`python -m airscale.runtime.airflow_entry ARGS...`: Airflow's own CLI (`airflow ARGS...`) with
airscale's accelerators installed first, each only when the cluster's Airflow configuration
turns it on (the plan does; airscale.tuning.planner):

- `scheduler`: the idle sleep ended by a change in the metadata database
  (airscale.runtime.scheduler_wakeup), `[airscale] scheduler_event_wakeup`; without it, pacing
  of the idle sleep (airscale.runtime.scheduler_pacing), `[airscale] scheduler_busy_sleep` > 0.
- `scheduler` and `celery worker`: a task supervisor that frees its slot as soon as the task
  process exits (airscale.runtime.exit_wakeup), `[airscale] supervisor_exit_wakeup`.
- `celery worker`: a DAG file parsed once per pool process instead of once per task
  (airscale.runtime.worker_dag_cache), `[airscale] worker_dag_cache_seconds` > 0; and the node
  name from AIRSCALE_CELERY_HOSTNAME (set for supervised workers, see `name_celery_node`).
- `celery worker`: a task's code paths run once in the worker's main process before the pool
  forks, so that pool processes share them instead of copying them at their first task
  (airscale.runtime.worker_warmup), `[airscale] worker_warmup`.
- `celery worker`: the pool process's objects frozen before each task process forks, so the
  task's garbage collector does not copy them (airscale.runtime.worker_gc),
  `[airscale] worker_gc_freeze`.
- `api-server`: the Execution API's routes built at start instead of at the first request,
  which blocks the whole process for seconds (airscale.runtime.api_warmup); on unless
  `[airscale] api_server_warmup` is false.
- `dag-processor`: DAG files parsed when they change, found by a file-system watch
  (airscale.runtime.dag_watch), `[airscale] dag_folder_watch`.

Everything else is Airflow's CLI unchanged: the same arguments, logs, signals and exit codes.
"""

from __future__ import annotations

import os
import sys


def name_celery_node(node: str) -> None:
    """Give Celery the worker's node name without `--celery-hostname`, whose duplicate check
    (a control broadcast that waits a fixed 1 s for replies) delays every worker start."""
    from celery import Celery

    original = Celery.worker_main

    def worker_main(self, argv=None):  # noqa: ANN001 - Celery's signature
        return original(self, [*(argv or []), "--hostname", node])

    Celery.worker_main = worker_main


def install_accelerators(args: list[str]) -> list[str]:
    """Install what `args` (Airflow CLI arguments) and the configuration ask for; returns the
    names of what was installed."""
    from airflow.configuration import conf

    done = []
    if args[:1] == ["scheduler"] or args[:2] == ["celery", "worker"]:
        if conf.getboolean("airscale", "supervisor_exit_wakeup", fallback=False):
            from airscale.runtime import exit_wakeup

            exit_wakeup.install()
            done.append("exit-wakeup")
    if args[:1] == ["scheduler"]:
        busy = conf.getfloat("airscale", "scheduler_busy_sleep", fallback=0.0)
        # The LISTEN connection bypasses PgBouncer when one pools (its transaction pooling
        # does not keep LISTEN): airscale writes the direct address then.
        url = (conf.get("airscale", "scheduler_listen_url", fallback="")
               or conf.get("database", "sql_alchemy_conn"))
        if conf.getboolean("airscale", "scheduler_event_wakeup", fallback=False) and url.startswith("postgresql"):
            from airscale.runtime import scheduler_wakeup

            scheduler_wakeup.install(url, conf.getfloat("airscale", "scheduler_event_sleep", fallback=5.0))
            done.append("scheduler-event-wakeup")
        elif busy > 0:
            from airscale.runtime import scheduler_pacing

            scheduler_pacing.install(
                busy, conf.getfloat("airscale", "scheduler_hot_seconds", fallback=3.0),
                conf.getint("airscale", "scheduler_busy_max_running", fallback=4))
            done.append("scheduler-pacing")
    elif args[:1] == ["api-server"]:
        if conf.getboolean("airscale", "api_server_warmup", fallback=True):
            from airscale.runtime import api_warmup

            api_warmup.install()
            done.append("api-warmup")
    elif args[:1] == ["dag-processor"]:
        if conf.getboolean("airscale", "dag_folder_watch", fallback=False):
            from airscale.runtime import dag_watch

            dag_watch.install()
            done.append("dag-folder-watch")
    elif args[:2] == ["celery", "worker"]:
        node = os.environ.get("AIRSCALE_CELERY_HOSTNAME")
        if node and "--celery-hostname" not in args and "-H" not in args:
            name_celery_node(node)
            done.append("node-name")
        max_age = conf.getfloat("airscale", "worker_dag_cache_seconds", fallback=0.0)
        if max_age > 0:
            from celery.signals import worker_init

            from airscale.runtime import worker_dag_cache

            # In the worker's main process, before the pool forks: every pool process inherits it.
            worker_init.connect(lambda **_: worker_dag_cache.install(max_age), weak=False)
            done.append("worker-dag-cache")
        if conf.getboolean("airscale", "worker_warmup", fallback=False):
            from airscale.runtime import worker_warmup

            # After the DAG cache's hook (connected first, called first): what it imports is warmed.
            worker_warmup.install()
            done.append("worker-warmup")
        if conf.getboolean("airscale", "worker_gc_freeze", fallback=False):
            from celery.signals import worker_init

            from airscale.runtime import worker_gc

            # After the DAG cache's hook: a parse made for the task is frozen with the rest.
            worker_init.connect(lambda **_: worker_gc.install(), weak=False)
            done.append("worker-gc-freeze")
    return done


def main() -> None:
    args = sys.argv[1:]
    install_accelerators(args)
    from airflow.__main__ import main as airflow_main

    sys.argv = ["airflow", *args]
    airflow_main()


if __name__ == "__main__":
    main()
