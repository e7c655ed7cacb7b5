"""The cross-version upgrade check (run by scripts/upgrade_check, which builds the old environment).

A cluster comes up with the OLD environment's airscale (an earlier Airflow 3 release), a
workload runs (runs of a 12-task DAG, one more triggered every few seconds), and the MAIN
environment's `airscale upgrade` (the pinned Airflow) runs while a probe, every second:
- asks the REST API (`GET /api/v2/monitor/health`): the API is available when it answers 200;
- reads the schedulers' heartbeats from the metadata database (`job` table): scheduling is
  available while at least one scheduler heartbeat is younger than 10 s.
Afterwards every run triggered must end successful with every task on its first try (no run
or task lost), and the report gives how long the API and the scheduling were unavailable.

Output: a summary on stdout and the whole result in .upgrade-check/result-FROM.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
TASKS_PER_RUN = 12
DAG_ID = "upgrade_check_workload"
DAG_SOURCE = f'''"""Workload of scripts/upgrade_check: {TASKS_PER_RUN} tasks of 2 s in three layers."""
import time

import pendulum
from airflow.sdk import dag, task


@task
def step():
    time.sleep(2)


@dag(dag_id="{DAG_ID}", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
     catchup=False, max_active_runs=64)
def upgrade_check_workload():
    prev = None
    for layer in range(3):
        tasks = [step.override(task_id=f"l{{layer}}_t{{i}}")() for i in range(4)]
        if prev:
            for a in prev:
                a >> tasks
        prev = tasks


upgrade_check_workload()
'''


def run(cmd: list[str], timeout: float = 1200, env: dict | None = None) -> subprocess.CompletedProcess:
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)


class Probe(threading.Thread):
    """Every second: does the REST API answer, does a scheduler heartbeat? Records the samples."""

    def __init__(self, api: str, db_dsn: dict):
        super().__init__(daemon=True)
        self.api, self.db_dsn = api, db_dsn
        self.samples: list[tuple[float, bool, bool]] = []  # (time, api ok, scheduling ok)
        self.stop = threading.Event()

    def _scheduling(self) -> bool:
        import psycopg2

        try:
            conn = psycopg2.connect(connect_timeout=2, options="-c statement_timeout=900", **self.db_dsn)
        except Exception:  # noqa: BLE001
            return False
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM job WHERE job_type = 'SchedulerJob' AND state = 'running' "
                            "AND latest_heartbeat > now() - interval '10 seconds'")
                return cur.fetchone()[0] > 0
        except Exception:  # noqa: BLE001 - a table locked by the migration: unknown, counted as down
            return False
        finally:
            conn.close()

    def run(self) -> None:
        while not self.stop.is_set():
            t = time.time()
            try:
                api_ok = httpx.get(f"{self.api}/api/v2/monitor/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                api_ok = False
            self.samples.append((t, api_ok, self._scheduling()))
            self.stop.wait(max(0.0, 1.0 - (time.time() - t)))


def gaps(samples: list[tuple[float, bool]]) -> dict:
    """Total seconds and longest stretch of failed samples, from 1-s samples (pure)."""
    longest = total = 0.0
    start = None
    for i, (t, ok) in enumerate(samples):
        nxt = samples[i + 1][0] if i + 1 < len(samples) else t + 1.0
        if not ok:
            total += nxt - t
            start = t if start is None else start
            longest = max(longest, nxt - start)
        else:
            start = None
    return {"unavailable_seconds": round(total, 1), "longest_gap_seconds": round(longest, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old-venv", required=True, type=Path)
    ap.add_argument("--base-port", type=int, default=34000)
    ap.add_argument("--runs-before", type=int, default=4)
    ap.add_argument("--trigger-every", type=float, default=15.0, help="seconds between runs during the upgrade")
    ap.add_argument("--keep", action="store_true", help="leave the cluster up afterwards")
    args = ap.parse_args()
    old_py = str((REPO / args.old_venv / "bin" / "python").absolute()) if not args.old_venv.is_absolute() \
        else str(args.old_venv / "bin" / "python")
    new = [sys.executable, "-m", "airscale.cli"]
    old = [old_py, "-m", "airscale.cli"]
    root = Path(tempfile.mkdtemp(prefix="airscale-upgrade-check-", dir="/tmp"))
    os.chmod(root, 0o755)
    (root / "dags").mkdir()
    (root / "dags" / f"{DAG_ID}.py").write_text(DAG_SOURCE)
    spec_path = root / "airscale.yaml"
    spec_path.write_text(yaml.safe_dump({
        "cluster": {"name": "upgrade-check", "base_port": args.base_port, "data_dir": str(root / "data")},
        "dags_folder": str(root / "dags"),
        "schedulers": {"count": 2},
        "queues": {"default": {"min_workers": 2, "max_workers": 2, "concurrency": 8}},
        "workers": {"drain_timeout": 120},
        "monitoring": {"enabled": False},
    }, sort_keys=False))
    spec = str(spec_path)
    result: dict = {"from_venv": str(args.old_venv), "spec": spec}
    sys.path.insert(0, str(REPO / "src"))
    from airscale.runtime.airflow_config import api_url
    from airscale.runtime.secrets import load
    from airscale.spec import load_spec
    from airscale.workload.client import AirflowClient

    s = load_spec(spec_path)
    api = api_url(s)
    try:
        t0 = time.monotonic()
        proc = run([*old, "up", "-s", spec])
        print(proc.stdout[-1500:], proc.stderr[-3000:], sep="\n")
        if proc.returncode != 0:
            result["error"] = "up with the old environment failed"
            return 1
        result["old_up_seconds"] = round(time.monotonic() - t0, 1)
        secrets = load(s.data_path / "secrets.json")
        versions_before = (s.data_path / "state" / "versions.conf").read_text()
        print(versions_before)
        client = AirflowClient(api, "admin", secrets.admin_password, timeout=30)
        client.wait_for_dag(DAG_ID, timeout=300)
        client.unpause(DAG_ID)
        run_ids = [client.trigger(DAG_ID) for _ in range(args.runs_before)]
        failed_triggers = 0
        db = {"host": s.client_host, "port": s.ports.postgres, "user": "airflow", "dbname": "airflow",
              "password": secrets.airflow_db_password}
        probe = Probe(api, db)
        probe.start()
        time.sleep(5)  # the workload is running when the upgrade begins
        t_up = time.time()
        up = subprocess.Popen([*new, "upgrade", "-s", spec, "--json"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
        # Keep triggering while it runs: a run every --trigger-every s whenever the API answers.
        while up.poll() is None:
            try:
                c = AirflowClient(api, "admin", secrets.admin_password, timeout=5)
                run_ids.append(c.trigger(DAG_ID))
                c.close()
            except Exception:  # noqa: BLE001 - the API is down: no run was made
                failed_triggers += 1
            time.sleep(args.trigger_every)
        out, err = up.communicate()
        t_done = time.time()
        print(err)
        result["upgrade_exit"] = up.returncode
        result["upgrade_seconds"] = round(t_done - t_up, 1)
        result["upgrade"] = json.loads(out) if out.strip().startswith("{") else out
        time.sleep(10)
        probe.stop.set()
        probe.join()
        window = [x for x in probe.samples if t_up - 1 <= x[0] <= t_done + 10]
        result["api"] = gaps([(t, a) for t, a, _ in window])
        result["scheduling"] = gaps([(t, sch) for t, _, sch in window])
        result["probe_samples"] = len(window)
        result["triggers_refused_while_api_down"] = failed_triggers
        if up.returncode != 0:  # rolled back: the runs made meanwhile went with the upgraded database
            result["verdict"] = "FAIL (the upgrade failed and rolled back)"
            return 1
        # Every run triggered ends successful, each task once.
        client = AirflowClient(api, "admin", secrets.admin_password, timeout=60)
        states = {}
        for rid in run_ids:
            states[rid] = client.wait_for_run(DAG_ID, rid, timeout=1800).state
        tis = [ti for rid in run_ids for ti in client.task_instances(DAG_ID, rid)]
        result["runs"] = len(run_ids)
        result["runs_not_successful"] = sorted(r for r, st in states.items() if st != "success")
        result["task_instances"] = len(tis)
        result["tasks_expected"] = len(run_ids) * TASKS_PER_RUN
        result["tasks_not_successful"] = sorted(f"{t['dag_run_id']}.{t['task_id']}={t['state']}"
                                                for t in tis if t["state"] != "success")
        result["tasks_retried"] = sorted(f"{t['dag_run_id']}.{t['task_id']}" for t in tis if t["try_number"] != 1)
        result["versions_after"] = (s.data_path / "state" / "versions.conf").read_text()
        lost = (result["runs_not_successful"] or result["tasks_not_successful"] or result["tasks_retried"]
                or result["task_instances"] != result["tasks_expected"])
        result["verdict"] = "FAIL" if up.returncode != 0 or lost else "PASS"
    finally:
        out_file = REPO / ".upgrade-check" / f"result-{Path(args.old_venv).name.removeprefix('venv-')}.json"
        out_file.parent.mkdir(exist_ok=True)
        out_file.write_text(json.dumps(result, indent=1, default=str))
        if not args.keep:
            down = run([*new, "down", "--purge", "-s", spec], timeout=600)
            if down.returncode != 0:
                print("down failed:", down.stdout[-800:], down.stderr[-800:])
            else:
                subprocess.run(["rm", "-rf", str(root)], check=False)
        print(f"result: {out_file}")
    summary = {k: result.get(k) for k in ("verdict", "upgrade_exit", "upgrade_seconds", "api", "scheduling", "runs",
                                          "runs_not_successful", "task_instances", "tasks_expected",
                                          "tasks_not_successful", "tasks_retried",
                                          "triggers_refused_while_api_down")}
    print(json.dumps(summary, indent=1))
    return 0 if result.get("verdict") == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
