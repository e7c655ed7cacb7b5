"""Autoscaling benchmark: one bursty trace under three ways of running the Celery workers.

    airscale       the autoscaler (policy + drain-first scale-down + pre-warm from the forecast)
    static-max     every worker of the queue running all the time
    keda-no-drain  the Helm chart's KEDA formula, ceil((queued + running) / concurrency) on the
                   same signals, scale-down by the HPA: a worker picked at random is terminated
                   like a pod (SIGTERM, then SIGKILL of everything left after the grace period)

The trace, per mode, is the family of five shapes of `autoscale_shapes` (a large unannounced
burst, a ramp, many small bursts, long tasks mixed with short ones, a scheduled burst) one after
another on a timeline that starts on a minute boundary, each shape starting and ending quiet.
All three modes run on one cluster, one after another, each from `min_workers` (static-max:
from max). The airscale mode runs the autoscaling section that `airscale init` writes (the
settings derived from the measured start-ups and drains); the report prints it and the run
fails if the cluster's spec differs. The KEDA emulation keeps its own `STABILIZATION_S` window.

Reported per shape and mode: worker-seconds (workers starting, running or stopping, sampled
every second over the shape's stretch), p50/p95 queue wait (start_date - queued_dttm) of the
shape's task instances, and tasks killed (task instances that did not succeed, and what the
terminated workers still ran when killed); then airscale's and KEDA's ratios to static-max
against the targets (worker-seconds <= 0.6x, p95 queue wait <= 1.2x, nothing killed).

The airscale mode also reports its workers' start-up times (supervisord start to the first
answer on Celery's control API, from the autoscaler's starts file): they bound how soon a burst
nobody announced gets new slots.

Run: `python -m airscale.bench.autoscale_trace --out bench-results` (about 55 minutes).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

from airscale.bench.autoscale_shapes import Shape, Stretch, cron_minutes, dag_file, shapes, timeline, window

MODES = ("static-max", "keda-no-drain", "airscale")
GAP_S = 120  # between windows: runs finish, workers return to min
MIN_WORKERS, MAX_WORKERS, CONCURRENCY = 1, 3, 4
STABILIZATION_S = 30
KEDA_POLL_S = 5.0
POD_GRACE_S = 20.0  # chart default is 600 s; the long tasks of the long-short shape are 3x this,
# as 15-hour tasks are to 600 s in apache/airflow #41163
AUTOSCALER_LEAD_S = 70  # the autoscaler starts this long before its window (it reads its records)
TARGET_WORKER_SECONDS, TARGET_P95 = 0.6, 1.2  # x static-max's, on every shape


# -- pure figures ------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def worker_seconds(samples: list[tuple[float, int]], start: float, end: float) -> float:
    """Integral of the worker count over [start, end], the count held until the next sample."""
    total = 0.0
    inside = [(t, n) for t, n in samples if start <= t <= end]
    for (t, n), (t2, _) in zip(inside, inside[1:] + [(end, 0)]):
        total += n * (t2 - t)
    return total


@dataclass
class ShapeResult:
    shape: str
    worker_seconds: float = 0.0
    waits: list[float] = field(default_factory=list)
    tasks: int = 0
    not_success: int = 0
    killed_running: int = 0  # task instances running on workers when they were SIGKILLed

    def row(self) -> dict:
        return {"shape": self.shape, "worker_seconds": round(self.worker_seconds),
                "p50_wait_s": _r(percentile(self.waits, 0.5)), "p95_wait_s": _r(percentile(self.waits, 0.95)),
                "tasks": self.tasks, "tasks_not_success": self.not_success,
                "tasks_running_on_killed_workers": self.killed_running}


@dataclass
class ModeResult:
    mode: str
    window: tuple[float, float]
    shapes: dict[str, ShapeResult] = field(default_factory=dict)
    stops: list[dict] = field(default_factory=list)
    startups: list[float] = field(default_factory=list)  # airscale: its workers' start-up times

    def row(self) -> dict:
        return {"mode": self.mode, "shapes": [r.row() for r in self.shapes.values()],
                "worker_startup_s": self.startups, "stops": self.stops}


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 2)


def shape_figures(stretches: tuple[Stretch, ...], start: float, samples: list[tuple[float, int]],
                  task_rows: list[tuple[str, float | None, str, str]], runs: dict[str, set[tuple[str, str]]],
                  stops: list[dict]) -> dict[str, ShapeResult]:
    """Per shape: worker-seconds over its stretch, waits and states of its runs' task instances
    (rows: state, wait, dag_id, run_id), and what was killed during its stretch (pure)."""
    out = {}
    for st in stretches:
        lo, hi = start + st.start, start + st.end
        mine = [r for r in task_rows if (r[2], r[3]) in runs.get(st.shape.name, set())]
        out[st.shape.name] = ShapeResult(
            st.shape.name, worker_seconds(samples, lo, hi),
            waits=[float(w) for _, w, _, _ in mine if w is not None], tasks=len(mine),
            not_success=sum(1 for s, _, _, _ in mine if s != "success"),
            killed_running=sum(x.get("running_at_kill", 0) for x in stops if lo <= x.get("at", -1) < hi))
    return out


def verdict(static: ShapeResult, other: ShapeResult) -> dict:
    """Ratios to static-max on one shape and whether the targets hold (pure)."""
    ws = other.worker_seconds / static.worker_seconds if static.worker_seconds else None
    ps, po = percentile(static.waits, 0.95), percentile(other.waits, 0.95)
    p95 = po / ps if po is not None and ps else None
    killed = other.not_success + other.killed_running
    met = (ws is not None and ws <= TARGET_WORKER_SECONDS and p95 is not None and p95 <= TARGET_P95
           and killed == 0 and other.tasks == static.tasks)
    return {"worker_seconds_x": _r(ws), "p95_wait_x": _r(p95), "killed_or_failed": killed, "met": met}


# -- the cluster side ----------------------------------------------------------------------------
class Trace:
    def __init__(self, root: Path, base_port: int, progress=print, family: tuple[Shape, ...] = ()):
        self.root, self.base_port, self.progress = root, base_port, progress
        self.family = family or shapes()
        self.stretches = timeline(self.family)
        self.window = window(self.stretches)
        self.samples: list[tuple[float, int]] = []
        self._stop_sampling = threading.Event()

    def spec_path(self) -> Path:
        return self.root / "airscale.yaml"

    def write(self, starts: list[float]) -> None:
        from airscale.spec import Spec

        (self.root / "dags").mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        offsets = [st.scheduled_at for st in self.stretches if st.scheduled_at is not None]
        (self.root / "dags" / "as_trace.py").write_text(dag_file(self.family, cron_minutes(starts, offsets)))
        data = {
            "cluster": {"name": "astrace", "data_dir": str(self.root / "data"), "base_port": self.base_port},
            "schedulers": {"count": 1},
            "queues": {"default": {"min_workers": MIN_WORKERS, "max_workers": MAX_WORKERS,
                                   "concurrency": CONCURRENCY}},
            "workers": {"drain_timeout": 300},
            # What users run: the section `airscale init` writes, nothing tuned for this trace.
            "autoscaling": init_autoscaling(),
            "dags_folder": str(self.root / "dags"),
            # Tasks of a SIGKILLed worker are failed after this instead of 300 s.
            "airflow_config": {"scheduler": {"task_instance_heartbeat_timeout": 30}},
        }
        if "monitoring" in Spec.model_fields:
            data["monitoring"] = {"enabled": False}
        self.spec_path().write_text(yaml.safe_dump(data))

    def dag_ids(self) -> list[str]:
        return sorted(set().union(*(s.dag_ids() for s in self.family)))

    def up(self):
        from airscale.assembly import open_cluster
        from airscale.spec import load_spec

        self.cluster = open_cluster(load_spec(self.spec_path()))
        self.cluster.up(lambda m: self.progress(f"  up: {m}"))
        self.cluster.stop_component("autoscaler")
        from airscale.autoscale.signals import Signals

        self.signals = Signals(self.cluster.spec, self.cluster.secrets(), self.cluster.supervisor)
        threading.Thread(target=self._sample, daemon=True).start()

    def down(self, purge: bool = True):
        self._stop_sampling.set()
        try:
            self.signals.close()
        except Exception:
            pass
        if hasattr(self, "cluster"):
            self.cluster.down(purge=purge)

    def workers(self) -> list[str]:
        return [f"worker-default-{i}" for i in range(1, MAX_WORKERS + 1)]

    def _sample(self):
        while not self._stop_sampling.is_set():
            try:
                infos = self.cluster.supervisor.infos()
                n = sum(infos.get(w, {}).get("statename") in ("STARTING", "RUNNING", "STOPPING")
                        for w in self.workers())
                self.samples.append((time.time(), n))
            except Exception:
                pass
            self._stop_sampling.wait(1.0)

    def query(self, sql: str, *args):
        return self.cluster.query(sql, *args)

    def client(self):
        from airscale.runtime.airflow_config import api_url
        from airscale.workload.client import AirflowClient

        return AirflowClient(api_url(self.cluster.spec), "admin", self.cluster.secrets().admin_password,
                             timeout=30)

    def reset_to(self, n: int) -> None:
        """n workers running and answering, the others stopped warm (between windows nothing
        runs). Any n workers will do: a worker killed in the keda window may take a while."""
        from airscale.runtime.health import worker_pings

        infos = self.cluster.supervisor.infos()
        up = [w for w in self.workers() if infos[w]["statename"] in ("STARTING", "RUNNING")]
        for w in sorted(up, reverse=True)[: max(0, len(up) - n)]:
            self.cluster.stop_component(w)
        up = sorted(up)[:n]
        for w in [w for w in self.workers() if w not in up][: n - len(up)]:
            self.cluster.supervisor.start(w)
        deadline = time.time() + 150
        while time.time() < deadline:
            pings = worker_pings(self.cluster.spec, self.cluster.secrets())
            if len(pings & set(self.workers())) >= n:
                return
            time.sleep(2)
        self.progress(f"  warning: fewer than {n} workers answer after 150 s: {sorted(pings)}")

    # -- keda-no-drain ---------------------------------------------------------------------
    def keda_loop(self, stop: threading.Event, result: ModeResult) -> None:
        """The chart's formula with HPA-like behaviour: up at once, down to the highest
        recommendation of the window, victims at random, terminated like pods."""
        history: list[tuple[float, int]] = []
        rng = random.Random(7)
        while not stop.is_set():
            try:
                counts = self.signals.task_counts().get("default", (0, 0))
                rec = min(MAX_WORKERS, max(MIN_WORKERS, math.ceil(sum(counts) / CONCURRENCY)))
                now = time.time()
                history = [(t, r) for t, r in history if now - t < STABILIZATION_S] + [(now, rec)]
                infos = self.cluster.supervisor.infos()
                running = [w for w in self.workers() if infos[w]["statename"] in ("STARTING", "RUNNING")]
                current = len(running)
                desired = rec if rec > current else min(current, max(r for _, r in history))
                if desired > current:
                    for w in [w for w in self.workers() if w not in running][: desired - current]:
                        self.cluster.supervisor.start(w)
                elif desired < current:
                    for w in rng.sample(running, current - desired):
                        threading.Thread(target=self._pod_terminate, args=(w, result), daemon=True).start()
            except Exception as e:  # keep emulating; the figures show what happened
                self.progress(f"  keda loop: {e}")
            stop.wait(KEDA_POLL_S)

    def _pod_terminate(self, worker: str, result: ModeResult) -> None:
        import psutil

        from airscale.runtime import forkserver

        pid = self.cluster.supervisor.info(worker)["pid"]
        family = forkserver.family(pid, self.cluster.layout.forkserver_socket)
        if not family:
            return
        running_at_term = self.signals.running_on(worker)
        self.cluster.supervisor.stop(worker)  # SIGTERM, as the kubelet sends
        _, alive = psutil.wait_procs(family, timeout=POD_GRACE_S)
        running_at_kill = self.signals.running_on(worker) if alive else 0
        for p in alive:  # the grace period is over: the container's processes are killed
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        result.stops.append({"worker": worker, "at": round(time.time(), 1), "running_at_term": running_at_term,
                             "running_at_kill": running_at_kill, "killed_processes": len(alive)})

    # -- one mode ----------------------------------------------------------------------------
    def _trigger_all(self, start: float, runs: dict[str, set[tuple[str, str]]], stop: threading.Event) -> None:
        """The REST triggers of every shape at their times (a slow answer delays the next one,
        as it would for a user's script)."""
        events = sorted((start + t, st.shape.name, d) for st in self.stretches for t, d in st.triggers())
        client = self.client()
        try:
            for at, shape, dag_id in events:
                _sleep_until(at)
                if stop.is_set():
                    return
                try:
                    runs.setdefault(shape, set()).add((dag_id, client.trigger(dag_id)))
                except Exception as e:  # the figures show the missing tasks
                    self.progress(f"  trigger {dag_id}: {e}")
        finally:
            client.close()

    def run_mode(self, mode: str, start: float) -> ModeResult:
        from airscale.autoscale import records

        result = ModeResult(mode, (start, start + self.window))
        self.reset_to(MAX_WORKERS if mode == "static-max" else MIN_WORKERS)
        stop = threading.Event()
        keda = None
        stops_before = len(records.read_jsonl(records.stops_file(self.cluster.layout)))
        starts_before = len(records.read_jsonl(records.starts_file(self.cluster.layout)))
        _sleep_until(start - AUTOSCALER_LEAD_S)
        if mode == "airscale":
            self.cluster.start_component("autoscaler", wait=False)
        elif mode == "keda-no-drain":
            keda = threading.Thread(target=self.keda_loop, args=(stop, result), daemon=True)
            keda.start()
        runs: dict[str, set[tuple[str, str]]] = {}
        triggers = threading.Thread(target=self._trigger_all, args=(start, runs, stop), daemon=True)
        triggers.start()
        for st in self.stretches:
            _sleep_until(start + st.start)
            self.progress(f"  {mode}: {st.shape.name}")
        _sleep_until(start + self.window)
        triggers.join(timeout=30)
        samples = list(self.samples)
        for st in self.stretches:
            if st.scheduled_at is not None:
                at = start + st.scheduled_at
                dag_id = st.shape.scheduled.dag_id
                sched = self.query("SELECT run_id FROM dag_run WHERE dag_id = %s AND "
                                   "run_after >= to_timestamp(%s) AND run_after < to_timestamp(%s)",
                                   dag_id, at - 30, at + 30)
                runs.setdefault(st.shape.name, set()).update((dag_id, r) for (r,) in sched)
        # Let the window's runs end (a killed task fails after the heartbeat timeout).
        pairs = set().union(*runs.values()) if runs else set()
        run_ids = sorted({r for _, r in pairs})
        deadline = time.time() + GAP_S - 40
        while time.time() < deadline:
            states = self.query("SELECT dag_id, run_id, state FROM dag_run WHERE run_id = ANY(%s)", run_ids)
            if all(s in ("success", "failed") for d, r, s in states if (d, r) in pairs):
                break
            time.sleep(2)
        stop.set()
        if mode == "airscale":
            self.cluster.stop_component("autoscaler")
            log = self.cluster.layout.log_of("autoscaler")
            self.derived = [line.split("autoscaling.", 1)[1].split(":")[0] for line in
                            (log.read_text().splitlines() if log.exists() else []) if " autoscaling." in line]
            result.stops = records.read_jsonl(records.stops_file(self.cluster.layout))[stops_before:]
            result.startups = [s["startup_s"] for s in
                               records.read_jsonl(records.starts_file(self.cluster.layout))[starts_before:]]
        if keda:
            keda.join(timeout=10)
        rows = self.query(
            "SELECT state, EXTRACT(EPOCH FROM (start_date - queued_dttm)), dag_id, run_id FROM task_instance "
            "WHERE run_id = ANY(%s) AND dag_id = ANY(%s)", run_ids, self.dag_ids())
        result.shapes = shape_figures(self.stretches, start, samples, [tuple(r) for r in rows], runs,
                                      result.stops if mode == "keda-no-drain" else [])
        for r in result.shapes.values():
            self.progress(f"  {mode}: {json.dumps(r.row())}")
        return result


def init_autoscaling() -> dict:
    """The autoscaling section of the spec `airscale init` writes."""
    from airscale.spec.example import example_spec

    return yaml.safe_load(example_spec())["autoscaling"]


def check_defaults(spec_autoscaling: dict) -> None:
    """Fail the run when the benchmarked cluster does not autoscale as `airscale init` does."""
    if spec_autoscaling != init_autoscaling():
        raise SystemExit(f"the benchmark's autoscaling section {spec_autoscaling} differs from what "
                         f"`airscale init` writes {init_autoscaling()}: the figures would not be the defaults'")


def _sleep_until(t: float) -> None:
    while (d := t - time.time()) > 0:
        time.sleep(min(d, 1.0))


def report(results: list[ModeResult]) -> str:
    by = {r.mode: r for r in results}
    static = by.get("static-max")
    lines = ["| shape | mode | worker-seconds | p50 / p95 queue wait s | tasks | not success "
             "| running on killed workers | x static-max: worker-seconds / p95 wait |",
             "|---|---|---|---|---|---|---|---|"]
    shape_names = list(results[0].shapes) if results else []
    met: dict[str, bool] = {}
    for name in shape_names:
        for r in results:
            sr = r.shapes[name]
            row = sr.row()
            ratio = ""
            if static and r is not static and name in static.shapes:
                v = verdict(static.shapes[name], sr)
                ratio = f"{v['worker_seconds_x']}x / {v['p95_wait_x']}x"
                if r.mode == "airscale":
                    met[name] = v["met"]
            lines.append(f"| {name} | {r.mode} | {row['worker_seconds']} | {row['p50_wait_s']} / {row['p95_wait_s']} | "
                         f"{row['tasks']} | {row['tasks_not_success']} | {row['tasks_running_on_killed_workers']} "
                         f"| {ratio} |")
    if met:
        lines.append("")
        lines.append(f"airscale against static-max (targets: worker-seconds <= {TARGET_WORKER_SECONDS}x, "
                     f"p95 queue wait <= {TARGET_P95}x, nothing killed or failed): "
                     + ", ".join(f"{n} {'met' if ok else 'NOT met'}" for n, ok in met.items()))
    a = by.get("airscale")
    if a and a.startups:
        lines.append(f"airscale worker start-ups (start to first control-API answer): "
                     f"{', '.join(f'{x:.1f}' for x in a.startups)} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m airscale.bench.autoscale_trace",
        description="The autoscaler against static workers and the Helm chart's KEDA formula on five "
                    "burst shapes (about 55 minutes).",
        epilog="example: python -m airscale.bench.autoscale_trace --out bench-results --modes static-max,airscale")
    ap.add_argument("--root", default="/tmp/airscale-astrace")
    ap.add_argument("--base-port", type=int, default=30300)  # apart from the tests (29100-29900)
    ap.add_argument("--out", default="bench-results")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--shapes", default="", help="comma-separated subset of: "
                    + ", ".join(s.name for s in shapes()) + " (default: all)")
    ap.add_argument("--seed", type=int, default=7, help="seed of the shapes' task durations")
    ap.add_argument("--keep", action="store_true",
                    help="keep the cluster's data and logs (decisions, starts, stops) after the run")
    args = ap.parse_args(argv)
    family = shapes(args.seed)
    if args.shapes:
        wanted = args.shapes.split(",")
        unknown = sorted(set(wanted) - {s.name for s in family})
        if unknown:
            raise SystemExit(f"--shapes: unknown {', '.join(unknown)}; known: {', '.join(s.name for s in family)}")
        family = tuple(s for s in family if s.name in wanted)
    modes = args.modes.split(",")
    if set(modes) - set(MODES):
        raise SystemExit(f"--modes: known modes are {', '.join(MODES)}")
    root = Path(args.root)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    t0 = time.time()

    def progress(msg: str) -> None:
        print(f"{time.time() - t0:7.1f}s {msg}", flush=True)

    trace = Trace(root, args.base_port, progress, family)
    # Windows on minute boundaries, the first one far enough for `up` and the DAG parse.
    first = (math.floor((time.time() + 150) / 60) + 1) * 60
    span = math.ceil((trace.window + GAP_S) / 60) * 60
    starts = [first + i * span for i in range(len(modes))]
    trace.write(starts)
    auto = yaml.safe_load(trace.spec_path().read_text())["autoscaling"]
    check_defaults(auto)
    results = []
    try:
        progress("bringing the cluster up")
        trace.up()
        c = trace.client()
        for dag in trace.dag_ids():
            c.wait_for_dag(dag, timeout=300)
            c.unpause(dag)
        c.close()
        for mode, start in zip(modes, starts):
            progress(f"{mode}: window {datetime.fromtimestamp(start, timezone.utc):%H:%M:%S}Z + {trace.window:.0f}s")
            results.append(trace.run_mode(mode, start))
    except BaseException:
        progress(f"failed: the cluster is stopped, its logs kept under {root / 'data' / 'logs'}")
        trace.down(purge=False)
        raise
    derived = list(dict.fromkeys(getattr(trace, "derived", [])))  # the autoscaler's log spans its restarts
    progress("down" + (f": data and logs kept under {root / 'data'}" if args.keep else ""))
    trace.down(purge=not args.keep)
    text = report(results) + "\n\nautoscaling section (as `airscale init` writes it): " + json.dumps(auto)
    if derived:
        text += "\nderived by the autoscaler: " + "; ".join(derived)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "autoscale-trace.md").write_text(text + "\n")
    (out / "autoscale-trace.json").write_text(json.dumps([r.row() for r in results], indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
