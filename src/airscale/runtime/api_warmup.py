"""Build the Execution API's versioned routes when the api-server starts, not at its first request.

The Execution API (every task's start, heartbeat and finish) is a Cadwyn app, and Cadwyn
generates the routes and pydantic models of every API version lazily, inside its first
`__call__`, on the event loop. That first request therefore blocks the whole api-server
process: measured 5.2-5.5 s on this 2-core host beside one busy cluster, and 18 s and 33 s in the soak, where
both api-servers stopped answering REST and Execution API calls alike at the start of the load
(a task's calls timed out meanwhile and it was retried). Done while the app is created, the
same work happens before uvicorn opens the port, so HAProxy and the tasks see the instance
only once it can answer, and a restarted instance never stalls the traffic it is given.

Installed by airscale.runtime.airflow_entry for `api-server` unless `[airscale]
api_server_warmup` is false. If Cadwyn's initialiser is not there (another Cadwyn version),
nothing changes: the routes are built at the first request, as before.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger(__name__)


def initialise(app: Any) -> bool:
    """Build `app`'s versioned routes now if it is a Cadwyn app that has not yet; True if it did."""
    init = getattr(app, "_cadwyn_initialize", None)
    if init is None or getattr(app, "_cadwyn_initialized", True):
        return False
    t0 = time.monotonic()
    init()
    log.info("airscale: Execution API routes built at start in %.1f s (Cadwyn builds them at the first "
             "request otherwise, blocking the api-server)", time.monotonic() - t0)
    return True


def install() -> None:
    from airflow.api_fastapi import app as api_app

    original = api_app.create_task_execution_api_app
    if getattr(original, "_airscale_original", None) is not None:
        return

    def create_task_execution_api_app(*args: Any, **kwargs: Any) -> Any:
        app = original(*args, **kwargs)
        try:
            initialise(app)
        except Exception:  # the lazy path still works: never stop the api-server for this
            log.warning("airscale: could not build the Execution API routes at start", exc_info=True)
        return app

    create_task_execution_api_app._airscale_original = original  # type: ignore[attr-defined]
    api_app.create_task_execution_api_app = create_task_execution_api_app
