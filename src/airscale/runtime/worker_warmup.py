"""Run a task's code paths once in the Celery worker's main process, before the pool forks.

Each pool process is a fork of the worker's main process and shares its pages until it writes
to them. Its first task writes to many: the DAG-parsing and Execution API client code runs for
the first time (CPython 3.11 specializes a function's bytecode in place on its first calls),
lazily built objects are made (the client's SSL context with its CA bundle, the DAG parser's
caches), and each of those pages becomes the pool process's own copy. Measured on a fork of a
worker's imports: a pool process's private memory after its first task's parse, client and
supervisor was 24 MiB cold and 11 MiB after this warm-up; and a worker's memory steps up each
time a burst sends a task to a pool process that had not run one.

Here the worker's main process, at Celery's `worker_init` (before the pool starts), parses a
small DAG of airscale's own with the parser a task uses (`BundleDagBag`), builds the Execution
API client a task builds (its SSL context is cached for the process), imports the supervisor,
and freezes what it holds (`gc.freeze()`, as Airflow's Celery provider does before the fork) so
that no pool process's collector touches those pages. Then each pool process, as it starts
(`worker_process_init`), runs the same steps once more: what is left of a first task's copying
(10 of its 11 MiB, measured the same way) happens at start, so a worker's memory is what it
will be once every slot has run a task, instead of stepping up whenever a burst first reaches
an idle slot, and the first task of each slot does not pay for it. Nothing here reaches the
network or the database. Installed by `airscale.runtime.airflow_entry` when `[airscale]
worker_warmup` is on.
"""

from __future__ import annotations

import gc
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)

# A DAG file in the shape DAG authors write (TaskFlow and a classic operator), parsed once.
WARMUP_DAG = Path(__file__).with_name("warmup_dag") / "airscale_worker_warmup.py"
# Never contacted: the client is built, not used.
UNUSED_BASE_URL = "http://127.0.0.1:9/execution/"


def warm(where: str = "worker") -> list[str]:
    """The steps that ran; a step that fails is skipped (a task then does it, as without this)."""
    done: list[str] = []
    t0 = time.monotonic()
    try:
        from airflow.dag_processing.dagbag import BundleDagBag

        bag = BundleDagBag(dag_folder=str(WARMUP_DAG), safe_mode=False, load_op_links=False,
                           bundle_path=WARMUP_DAG.parent, bundle_name="airscale-worker-warmup")
        if bag.dags and not bag.import_errors:
            done.append("parse")
    except Exception:  # noqa: BLE001 - a warm-up, never a reason for a worker not to start
        log.debug("airscale: worker warm-up could not parse its DAG", exc_info=True)
    try:
        import httpx

        from airflow.sdk.api.client import Client

        Client(base_url=UNUSED_BASE_URL, token="", limits=httpx.Limits(max_keepalive_connections=1)).close()
        done.append("client")
    except Exception:  # noqa: BLE001
        log.debug("airscale: worker warm-up could not build the API client", exc_info=True)
    try:
        import airflow.sdk.execution_time.supervisor  # noqa: F401

        done.append("supervisor")
    except Exception:  # noqa: BLE001
        log.debug("airscale: worker warm-up could not import the supervisor", exc_info=True)
    gc.collect()
    gc.freeze()
    message = ("airscale: worker warmed before its pool forks (%s, %.0f ms)" if where == "worker"
               else "airscale: pool process warmed before its first task (%s, %.0f ms)")
    (log.info if where == "worker" else log.debug)(message, ", ".join(done) or "nothing",
                                                    (time.monotonic() - t0) * 1000)
    return done


def install() -> None:
    """Run `warm` at this Celery worker's `worker_init`, in its main process, and in each pool
    process as it starts."""
    from celery.signals import worker_init, worker_process_init

    worker_init.connect(lambda **_: warm("worker"), weak=False)
    worker_process_init.connect(lambda **_: warm("pool"), weak=False)
