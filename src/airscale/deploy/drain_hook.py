"""preStop hook of a Celery worker pod: stop taking tasks, then wait for the running ones.

Kubernetes runs this inside the worker container (the Airflow image: it has Celery and the
Celery provider, not airscale) before it sends SIGTERM. The worker first leaves every queue it
consumes (`cancel_consumer`), so no new task lands on a pod that is going away, then the hook
waits until the worker reports no active task, bounded by --timeout. Only then does the
kubelet send SIGTERM, which Celery handles as a warm shutdown of an already idle worker.

Without this hook a scale-down SIGTERMs a busy worker and its tasks die with it
(apache/airflow #26587, #32180, #41163). The pod's terminationGracePeriodSeconds must exceed
--timeout: the grace period includes the time spent here.

The hook always exits 0: a failing preStop hook only produces an event, and the kubelet goes
on with SIGTERM anyway, so reporting on stdout (kept in the pod's events) is all it can do.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time


def log(msg: str) -> None:
    print(f"airscale-drain: {msg}", flush=True)


def active_count(app, node: str, timeout: float) -> int | None:
    """Active tasks of `node`, or None when it did not answer in time."""
    replies = app.control.inspect(destination=[node], timeout=timeout).active()
    if not replies or node not in replies:
        return None
    return len(replies[node])


def consumed_queues(app, node: str, timeout: float) -> list[str]:
    replies = app.control.inspect(destination=[node], timeout=timeout).active_queues() or {}
    return [q["name"] for q in replies.get(node, [])]


def drain(app, node: str, timeout: float, poll: float = 5.0, clock=time.monotonic, sleep=time.sleep) -> bool:
    """Cancel the node's consumers and wait until it has no active task; True when drained."""
    deadline = clock() + timeout
    queues = consumed_queues(app, node, timeout=min(5.0, timeout))
    for q in queues:
        app.control.cancel_consumer(q, destination=[node], reply=True, timeout=5.0)
    log(f"{node} stopped consuming {', '.join(queues) or '(no queue answered)'}")
    while True:
        n = active_count(app, node, timeout=min(5.0, max(0.5, deadline - clock())))
        if n == 0:
            log(f"{node} has no active task: drained")
            return True
        if clock() >= deadline:
            log(f"{node} still has {n if n is not None else 'unknown'} active task(s) after {timeout:.0f}s")
            return False
        log(f"{node}: {n if n is not None else 'no answer,'} active task(s), waiting")
        sleep(max(0.0, min(poll, deadline - clock())))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--timeout", type=float, required=True, help="Seconds to wait for active tasks.")
    p.add_argument("--node", default=f"celery@{socket.gethostname()}", help="Celery node name.")
    p.add_argument("--poll", type=float, default=5.0, help="Seconds between two checks.")
    args = p.parse_args(argv)
    try:
        from airflow.providers.celery.executors.celery_executor_utils import app
    except Exception as e:  # the hook must never block the shutdown it exists to make safe
        log(f"cannot load the Celery app ({e!r}); skipping the drain")
        return 0
    try:
        drain(app, args.node, args.timeout, args.poll)
    except Exception as e:
        log(f"drain failed ({e!r}); Kubernetes continues with SIGTERM (warm shutdown)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
