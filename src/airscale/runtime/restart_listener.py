"""Supervisor event listener that counts and logs unexpected exits (restarts).

supervisord restarts a process that exits unexpectedly, but keeps no count. This listener
receives PROCESS_STATE_EXITED/FATAL events and keeps per-component counts in a JSON file that
`airscale status` reads. It writes the file atomically so a reader never sees half of it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from supervisor import childutils


def record(path: Path, name: str, event: str, expected: bool) -> dict:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        data = {}
    entry = data.setdefault(name, {"restarts": 0, "fatal": 0, "last": None})
    if event == "PROCESS_STATE_FATAL":
        entry["fatal"] += 1
    elif not expected:
        entry["restarts"] += 1
    entry["last"] = {"event": event, "expected": expected, "at": time.time()}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
    return entry


def main() -> None:
    path = Path(sys.argv[1])
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        headers, payload = childutils.listener.wait(sys.stdin, sys.stdout)
        event = headers.get("eventname", "")
        body = dict(x.split(":", 1) for x in payload.split())
        name = body.get("processname", "?")
        expected = body.get("expected", "1") == "1"
        entry = record(path, name, event, expected)
        if event == "PROCESS_STATE_FATAL":
            print(f"{time.strftime('%F %T')} {name}: gave up restarting after repeated failures "
                  f"at start (FATAL); see its log", file=sys.stderr, flush=True)
        elif not expected:
            print(f"{time.strftime('%F %T')} {name}: exited unexpectedly (pid {body.get('pid')}); "
                  f"restarting (restart #{entry['restarts']})", file=sys.stderr, flush=True)
        childutils.listener.ok(sys.stdout)


if __name__ == "__main__":
    main()
