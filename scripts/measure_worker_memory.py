#!/usr/bin/env python
"""Measure the memory (PSS) of a running cluster's processes: what tuning/autoscaling.py records.

    python scripts/measure_worker_memory.py -s SPEC [--worker worker-default-1]

Prints, as JSON: the PSS of every component's process tree; for the worker, its parent process,
its pool processes, and the task processes below them. Run it once with the worker idle and once
with every slot running a task (e.g. a DAG of `concurrency` mapped tasks that sleep), then:
idle slot = (worker tree idle - parent) / concurrency; running task = (tree busy - tree idle) /
busy slots. PSS counts a page shared by n processes as 1/n to each, so trees can be summed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import psutil

MIB = 1024 * 1024


def pss(p: psutil.Process) -> float:
    try:
        return p.memory_full_info().pss / MIB
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0.0




def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-s", "--spec", required=True)
    ap.add_argument("--worker", default="worker-default-1")
    args = ap.parse_args()
    from airscale.runtime.forkserver import family, forked_map
    from airscale.runtime.layout import Layout
    from airscale.spec import load_spec

    forked = forked_map(Layout(load_spec(Path(args.spec)).data_path).forkserver_socket)
    rows = json.loads(subprocess.run(
        [str(Path(sys.executable).with_name("airscale")), "status", "--json", "-s", args.spec],
        check=True, capture_output=True, text=True).stdout)
    out: dict = {"components": {}, "total_memory_mib": psutil.virtual_memory().total / MIB}
    for r in rows:
        if not r["pid"]:
            continue
        procs = family(r["pid"], forked=forked)  # a forked worker's tree, not its client's
        out["components"][r["component"]] = round(sum(pss(p) for p in procs), 1)
        if r["component"] == args.worker:
            # The worker forked for the client, its children (the log server and the pool
            # processes) and their children (the task processes of running tasks).
            top = next(p for p in procs if p.pid in forked)
            out["worker"] = {
                "client_mib": round(pss(psutil.Process(r["pid"])), 1),
                "parent_mib": round(pss(top), 1),
                "children": [{"pid": c.pid, "mib": round(pss(c), 1),
                              "below_mib": round(sum(pss(g) for g in c.children(recursive=True)), 1)}
                             for c in top.children()],
                "tree_mib": out["components"][r["component"]],
            }
    out["cluster_without_workers_mib"] = round(sum(
        v for k, v in out["components"].items() if not (k.startswith("worker-") and k != "worker-forkserver")), 1)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
