"""Measure the exporter's database scrape as history grows (for BENCHMARKS.md).

`python -m airscale.observe.scrape_bench --spec FILE --task-instances 100000` copies one
finished DAG run of the cluster into N/10 runs x 10 task instances spread over 30 days (90 %
success, 8 % failed, 2 % still queued/running), ANALYZEs, then times MetadataCollector.collect()
and a full HTTP scrape of the running exporter. It writes into the metadata database:
run it only on a throw-away cluster.
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx

from airscale.observe.dbmetrics import MetadataCollector
from airscale.runtime.cluster import Cluster
from airscale.runtime.health import db_connect
from airscale.spec import load_spec

RUNS_PER_TI = 10


def _columns(cur, table: str) -> list[str]:
    cur.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                "ORDER BY ordinal_position", (table,))
    return [r[0] for r in cur.fetchall()]


def populate(conn, dag_id: str, task_instances: int) -> None:
    runs = task_instances // RUNS_PER_TI
    with conn.cursor() as cur:
        cur.execute("SELECT run_id FROM dag_run WHERE dag_id = %s AND end_date IS NOT NULL LIMIT 1", (dag_id,))
        src_run = cur.fetchone()[0]
        run_cols = [c for c in _columns(cur, "dag_run") if c != "id"]
        over = {
            "run_id": "'bench__' || g",
            "logical_date": "NULL",
            "run_after": "now() - mod(g, 43200) * interval '1 minute'",
            "start_date": "now() - mod(g, 43200) * interval '1 minute'",
            "end_date": "now() - mod(g, 43200) * interval '1 minute' + interval '20 seconds'",
        }
        sel = ", ".join(over.get(c, c) for c in run_cols)
        cur.execute(f"INSERT INTO dag_run ({', '.join(run_cols)}) SELECT {sel} FROM dag_run, "
                    f"generate_series(1, %s) g WHERE dag_id = %s AND run_id = %s", (runs, dag_id, src_run))
        ti_cols = _columns(cur, "task_instance")
        state = ("CASE WHEN mod(g, 50) = 0 THEN 'queued' WHEN mod(g, 50) = 1 THEN 'running' "
                 "WHEN mod(g, 50) < 6 THEN 'failed' ELSE 'success' END")
        over = {
            "id": "gen_random_uuid()",
            "run_id": f"'bench__' || (g / {RUNS_PER_TI} + 1)",
            "task_id": f"task_id || '_' || mod(g, {RUNS_PER_TI})",
            "state": state,
            "start_date": "now() - mod(g, 43200) * interval '1 minute'",
            "end_date": "now() - mod(g, 43200) * interval '1 minute' + interval '5 seconds'",
            "queued_dttm": "now() - mod(g, 43200) * interval '1 minute' - interval '1 second'",
        }
        sel = ", ".join(over.get(c, c) for c in ti_cols)
        cur.execute(
            f"INSERT INTO task_instance ({', '.join(ti_cols)}) SELECT {sel} FROM "
            f"(SELECT * FROM task_instance WHERE dag_id = %s AND run_id = %s LIMIT 1) t, "
            f"generate_series(0, %s) g", (dag_id, src_run, task_instances - 1))
    conn.commit()
    with conn.cursor() as cur:
        conn.autocommit = True
        cur.execute("ANALYZE task_instance")
        cur.execute("ANALYZE dag_run")


def time_collect(collector: MetadataCollector, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        families = list(collector.collect())
        out.append(time.perf_counter() - t)
        assert any(f.name == "airscale_metadata_db_up" and f.samples[0].value == 1 for f in families)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True)
    ap.add_argument("--dag-id", default="observe_ok")
    ap.add_argument("--task-instances", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    cluster = Cluster(load_spec(args.spec), ())  # only its database and secrets
    spec, secrets = cluster.spec, cluster.secrets()
    collector = MetadataCollector(lambda: db_connect(spec, secrets), list(spec.queues),
                                  spec.monitoring.thresholds.failure_window)
    port = spec.ports.exporter

    def report(label: str) -> None:
        with db_connect(spec, secrets) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM task_instance")
            n = cur.fetchone()[0]
        times = time_collect(collector, args.repeats)
        http = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).raise_for_status()
            http.append(time.perf_counter() - t)
        print(f"{label}: {n} task instances; DB collect median {statistics.median(times) * 1000:.1f} ms "
              f"(max {max(times) * 1000:.1f}); full HTTP scrape median {statistics.median(http) * 1000:.1f} ms "
              f"(max {max(http) * 1000:.1f})", flush=True)

    report("before")
    with db_connect(spec, secrets) as conn:
        t = time.perf_counter()
        populate(conn, args.dag_id, args.task_instances)
        print(f"inserted {args.task_instances} task instances in {time.perf_counter() - t:.1f}s", flush=True)
    report("after")


if __name__ == "__main__":
    main()
