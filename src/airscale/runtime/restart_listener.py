"""Restarts with backoff: a supervisor event listener that restarts, counts and logs.

supervisord backs off a process that fails while starting (startsecs/startretries), but one
that ran and then died it restarts at once, forever, and keeps no count. So programs run with
`autorestart=false`, and this listener receives their PROCESS_STATE_EXITED events: for an
unexpected exit it counts the restart, logs it, and starts the process again after a delay
that doubles with each quick crash in a row (`backoff_delay`, pure). The counts live in a JSON
file, written atomically, that `airscale status` reads.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

from supervisor import childutils

FIRST_DELAY = 1.0
MAX_DELAY = 60.0
# A process that stayed up this long before dying starts a new series of crashes.
HEALTHY_UPTIME = 60.0


def backoff_delay(quick_crashes: int) -> float:
    """Seconds before restart #n of a series of quick crashes (n >= 1): 1, 2, 4 ... 60."""
    return min(MAX_DELAY, FIRST_DELAY * 2 ** max(0, quick_crashes - 1))


def next_series(previous: int, uptime: float) -> int:
    """The length of the crash series after a crash that followed `uptime` seconds up."""
    return 1 if uptime >= HEALTHY_UPTIME else previous + 1


def record(path: Path, name: str, event: str, expected: bool, uptime: float | None = None) -> dict:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        data = {}
    entry = data.setdefault(name, {"restarts": 0, "fatal": 0, "series": 0, "last": None})
    if event == "PROCESS_STATE_FATAL":
        entry["fatal"] += 1
    elif not expected:
        entry["restarts"] += 1
        entry["series"] = next_series(entry.get("series", 0), uptime if uptime is not None else 0.0)
    entry["last"] = {"event": event, "expected": expected, "at": time.time()}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
    return entry


def _log(msg: str) -> None:
    print(f"{time.strftime('%F %T')} {msg}", file=sys.stderr, flush=True)


def _restart(rpc, name: str) -> None:
    try:
        if rpc.supervisor.getProcessInfo(name)["statename"] == "EXITED":
            rpc.supervisor.startProcess(name, False)
    except Exception as e:  # supervisord shutting down, or the process was removed
        _log(f"{name}: restart skipped ({e.__class__.__name__}: {e})")


def main() -> None:
    path = Path(sys.argv[1])
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()
    while True:
        headers, payload = childutils.listener.wait(sys.stdin, sys.stdout)
        event = headers.get("eventname", "")
        body = dict(x.split(":", 1) for x in payload.split())
        name = body.get("processname", "?")
        expected = body.get("expected", "1") == "1"
        uptime = None
        rpc = None
        if event == "PROCESS_STATE_EXITED" and not expected:
            rpc = childutils.getRPCInterface(os.environ)
            try:
                info = rpc.supervisor.getProcessInfo(name)
                uptime = max(0.0, info["stop"] - info["start"])
            except Exception:
                uptime = 0.0
        with lock:
            entry = record(path, name, event, expected, uptime)
        if event == "PROCESS_STATE_FATAL":
            _log(f"{name}: gave up restarting after repeated failures at start (FATAL); see its log")
        elif not expected:
            delay = backoff_delay(entry["series"])
            _log(f"{name}: exited unexpectedly (pid {body.get('pid')}, up {uptime:.0f}s); "
                 f"restarting in {delay:.0f}s (restart #{entry['restarts']})")
            threading.Timer(delay, _restart, args=(rpc, name)).start()
        childutils.listener.ok(sys.stdout)


if __name__ == "__main__":
    main()
