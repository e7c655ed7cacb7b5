"""The autoscaler's files under the data dir's `state/` folder.

- `autoscaler.json`: the latest decision per queue (what `airscale status` shows), replaced
  atomically so a reader never sees half a file;
- `autoscaler-stops.jsonl`: one line per worker stopped, with the tasks it held at that moment
  (the evidence that a scale-down never stopped a busy worker);
- `autoscaler-decisions.jsonl`: one line per decision that changed something or changed reason;
- `autoscaler-starts.jsonl`: one line per worker start, with the seconds from the start to its
  first answer on Celery's control API (what the pre-warm lead is derived from);
- `autoscaler-memory.jsonl`: a serving worker's memory (PSS of its process tree) with its running
  tasks, once a minute (memory_sampler.py; the memory figures are refitted from it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from airscale.runtime.layout import Layout
from airscale.tuning.autoscaling import STARTS_FILE, STOPS_FILE


def state_file(layout: Layout) -> Path:
    return layout.state / "autoscaler.json"


def stops_file(layout: Layout) -> Path:
    return layout.state / STOPS_FILE


def decisions_file(layout: Layout) -> Path:
    return layout.state / "autoscaler-decisions.jsonl"


def starts_file(layout: Layout) -> Path:
    return layout.state / STARTS_FILE


def write_json_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def append_jsonl(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def write_jsonl_atomic(path: Path, rows: list[dict]) -> None:
    """Replace a JSONL file whole (cutting it back to its newest lines)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    os.replace(tmp, path)


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a crash mid-write
    return out


def read_state(layout: Layout) -> dict | None:
    try:
        return json.loads(state_file(layout).read_text())
    except (FileNotFoundError, ValueError):
        return None
