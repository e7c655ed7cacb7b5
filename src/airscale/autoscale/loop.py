"""The autoscaler loop: read signals, decide per queue, act, record, sleep; survive errors.

One iteration: a snapshot (signals), drained workers stopped (actuator), a decision per queue
(policy), the plan applied (actuator), the state file and metrics updated. A failed iteration is
logged with its traceback and retried after a back-off that doubles up to `MAX_BACKOFF_S`
(a database restart must not be hammered, nor kill the loop); the first success resets it.

Run by supervisord as `python -m airscale.autoscale.loop --spec FILE` when
`autoscaling.enabled`, or in the foreground with `airscale autoscale`. On Kubernetes the
rendered Deployment runs `airscale autoscale --kubernetes`: the same loop with the workers read
from pods, no actuator (KEDA scales on the exported desired count) and, after each iteration,
the worker pods' deletion cost written (in_cluster.py, deletion_cost.py).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from airscale.autoscale import records
from airscale.autoscale.actuator import LocalActuator, available_memory_mib
from airscale.autoscale.metrics import AutoscalerMetrics
from airscale.autoscale.plan import Verb, WorkerState, capacity, plan
from airscale.autoscale.policy import Decision, History, QueuePolicy, memory_for_new_workers, recommend
from airscale.autoscale.signals import Signals, Snapshot
from airscale.autoscale.wakeup import BrokerWakeup
from airscale.runtime.layout import Layout
from airscale.runtime.secrets import load as load_secrets
from airscale.runtime.supervisor import Supervisor
from airscale.spec import Spec
from airscale.tuning.autoscaling import AutoscalingPlan, Measured, MemoryFigures, derive

log = logging.getLogger("airscale.autoscale")

MAX_BACKOFF_S = 60.0
RECENT_ERRORS = 10
BUSY_INTERVAL_S = 1.0
PUSHED_DURING_ITERATION_S = 0.2


def backoff_delay(failures: int, interval: float) -> float:
    """Seconds to wait after `failures` consecutive failed iterations (pure)."""
    if failures <= 0:
        return interval
    return min(MAX_BACKOFF_S, interval * 2 ** (failures - 1))


def next_delay(interval: float, failures: int, urgent: bool) -> float:
    """Seconds to the next iteration (pure). While work is queued or workers start or drain,
    at most `BUSY_INTERVAL_S`: a drained worker is stopped, a started one seen answering, and a
    queue that grew again is seen, sooner; a quiet cluster is polled at the spec's interval."""
    if failures > 0:
        return backoff_delay(failures, interval)
    return min(interval, BUSY_INTERVAL_S) if urgent else interval


@dataclass
class QueueState:
    history: History = ()
    last: Decision | None = None


@dataclass
class Autoscaler:
    spec: Spec
    signals: Signals
    actuator: LocalActuator
    layout: Layout
    metrics: AutoscalerMetrics
    clock: Callable[[], float] = time.time
    queues: dict[str, QueueState] = field(default_factory=dict)
    recent_errors: list[str] = field(default_factory=list)
    last_snapshot: Snapshot | None = None
    summary: dict[str, dict] = field(default_factory=dict)  # the last iteration, per queue
    urgent: bool = False  # the last iteration saw work queued, workers starting or draining
    # Called with each iteration's snapshot once its decisions are exported; on Kubernetes it
    # writes the worker pods' deletion cost (in_cluster.py).
    after_iteration: Callable[[Snapshot], None] | None = None
    # Ends a quiet wait when a task is pushed on a scaled queue (wakeup.py); None: polling only.
    wakeup: BrokerWakeup | None = None
    # The machine's available memory (MiB) each iteration; None: not read (Kubernetes, where
    # the scheduler of pods places workers by their requests).
    available_memory: Callable[[], float] | None = None
    # The memory figures of the headroom; None: the derived plan's (refitted from the samples
    # of this cluster's workers once there are enough, memory_sampler.py).
    memory: MemoryFigures | None = None

    def derived(self) -> AutoscalingPlan:
        """The interval, window, step and memory floor: the spec's, else from the start-ups and
        drains measured so far (tuning.autoscaling.derive)."""
        measured = getattr(self.actuator, "measured", lambda: Measured())()
        return derive(self.spec, measured)

    def iterate(self) -> dict[str, Decision]:
        spec, a = self.spec, self.spec.autoscaling
        snap = self.signals.read(a.prewarm_lookahead)
        self.last_snapshot = snap
        derived = self.derived()
        memory = self.memory or derived.memory
        available = self.available_memory() if self.available_memory is not None else None
        decisions: dict[str, Decision] = {}
        summary: dict[str, dict] = {}
        urgent = False
        for q, qs in snap.queues.items():
            for stop in self.actuator.progress(qs):
                self.metrics.stops.labels(q, stop.reason).inc()
                self.metrics.drain_seconds.labels(q).observe(stop.drain_seconds)
            now = self.clock()
            st = self.queues.setdefault(q, QueueState())
            current = capacity(list(qs.workers))
            # The local actuator times its starts; where something else starts workers (KEDA on
            # Kubernetes) nothing is measured and the pre-warm uses the whole look-ahead.
            startup = getattr(self.actuator, "startup_s", lambda _q: None)(q)
            conc = spec.queues[q].concurrency
            room = None
            if available is not None:
                up = [w for w in qs.workers if w.counts_as_capacity]
                room = memory_for_new_workers(available, conc, [w.busy for w in up],
                                              sum(w.state is WorkerState.STARTING for w in up), memory)
            policy = QueuePolicy.from_spec(spec, q, derived, memory)
            d = recommend(qs.observation(current, startup, room), policy, st.history, now)
            st.history = d.history
            actions = plan(d.desired, list(qs.workers))
            done = self.actuator.apply(q, actions, qs.workers)
            if available is not None:  # the next queue sees what this one's starts will take
                available -= sum(a.verb is Verb.START for a in actions) * policy.worker_mib
            changed = st.last is None or (st.last.desired, st.last.current, st.last.reason) != (
                d.desired, d.current, d.reason)
            if changed or done:
                log.info("queue %s: %s [%s] %s%s", q, f"{d.current}->{d.desired}", d.reason.value, d.message,
                         f"; actions: {', '.join(done)}" if done else "")
                if not self.actuator.dry_run:  # a dry run must not overwrite the real loop's files
                    records.append_jsonl(records.decisions_file(self.layout), {
                        "at": now, "queue": q, "current": d.current, "desired": d.desired,
                        "reason": d.reason.value, "message": d.message, "demand": d.demand,
                        "forecast": qs.forecast, "actions": done, "memory_for_new_workers_mib":
                    None if room is None else round(room), "startup_s": startup,
                    })
            else:
                log.debug("queue %s: %s [%s] %s", q, d.desired, d.reason.value, d.message)
            st.last = d
            decisions[q] = d
            draining = [w for w in qs.workers if w.state is WorkerState.DRAINING]
            m = self.metrics
            m.desired.labels(q).set(d.desired)
            m.actual.labels(q).set(current)
            m.draining.labels(q).set(len(draining))
            m.draining_tasks.labels(q).set(sum(w.busy or 0 for w in draining))
            m.demand.labels(q).set(d.demand)
            m.forecast.labels(q).set(qs.forecast)
            m.decisions.labels(q, d.reason.value).inc()
            m.memory_held.labels(q).set(1 if d.reason.value == "MemoryHeadroom" else 0)
            urgent = urgent or qs.queued > 0 or d.desired != current or any(
                w.state in (WorkerState.STARTING, WorkerState.DRAINING) for w in qs.workers)
            summary[q] = {
                "desired": d.desired, "actual": current, "draining": [w.name for w in draining],
                "reason": d.reason.value, "message": d.message, "demand": d.demand,
                "queued": qs.queued, "running": qs.running, "broker_depth": qs.broker_depth,
                "forecast": qs.forecast, "actions": done, "memory_for_new_workers_mib":
                    None if room is None else round(room),
                "workers": {w.name: {"state": w.state.value, "active": w.active, "reserved": w.reserved}
                            for w in qs.workers},
            }
        self.metrics.last_success.set(self.clock())
        self.summary = summary
        self.urgent = urgent
        if not self.actuator.dry_run:
            records.write_json_atomic(records.state_file(self.layout), {
                "at": self.clock(), "queues": summary,
                "forecast_runs": list(snap.forecast_runs), "recent_errors": self.recent_errors[-3:],
            })
        sample = getattr(self.actuator, "sample_memory", None)
        if sample is not None:
            try:
                sample(snap)
            except Exception:  # a figure missed this minute must not fail the iteration's decisions
                log.warning("could not sample the workers' memory", exc_info=True)
        if self.after_iteration is not None:
            self.after_iteration(snap)
        return decisions

    def run(self, stop: threading.Event, once: bool = False) -> None:
        failures = 0
        while not stop.is_set():
            # Derived from the start-ups measured so far, so it may change as they come in.
            interval = self.derived().value("interval")
            started = time.monotonic()
            try:
                self.iterate()
                failures = 0
            except Exception as e:  # noqa: BLE001 - the loop must outlive any one failure
                failures += 1
                self.metrics.errors.inc()
                msg = f"{time.strftime('%H:%M:%SZ', time.gmtime())} {e.__class__.__name__}: {str(e)[:200]}"
                self.recent_errors = (self.recent_errors + [msg])[-RECENT_ERRORS:]
                log.exception("iteration failed (%d in a row); retrying in %.0fs",
                              failures, backoff_delay(failures, interval))
            if once:
                return
            wait = next_delay(interval, failures, self.urgent)
            delay = max(0.0, wait - (time.monotonic() - started if not failures else 0))
            if self.wakeup is not None and not failures and not self.urgent:
                if self.wakeup.drain():  # pushed while the iteration ran, maybe after its reads
                    delay = min(delay, PUSHED_DURING_ITERATION_S)
                if self.wakeup.wait(delay, stop):
                    log.debug("woken by a task pushed on a queue")
            else:
                stop.wait(delay)
        if self.last_snapshot is not None:
            self.actuator.undrain_all(self.last_snapshot.queues)


def build(spec: Spec, dry_run: bool = False, metrics: AutoscalerMetrics | None = None) -> Autoscaler:
    layout = Layout(spec.data_path)
    supervisor = Supervisor(layout)
    secrets = load_secrets(layout.secrets_file)
    signals = Signals(spec, secrets, supervisor)
    actuator = LocalActuator(spec, signals, supervisor, layout, dry_run=dry_run)
    return Autoscaler(spec, signals, actuator, layout, metrics or AutoscalerMetrics(),
                      wakeup=BrokerWakeup(signals.redis, list(spec.queues)),
                      available_memory=available_memory_mib)


def serve_metrics(spec: Spec, metrics: AutoscalerMetrics, port: int | None = None) -> int:
    """Serve the metrics on `port`, else the spec's autoscaler port (the Kubernetes rendering
    gives its own, deploy/k8s/ports.py)."""
    from prometheus_client import start_http_server

    port = port or spec.ports.autoscaler_metrics
    start_http_server(port, addr=spec.cluster.listen_host, registry=metrics.registry)
    return port


def run_forever(spec: Spec, dry_run: bool = False, once: bool = False, metrics_port: bool = True,
                port: int | None = None, scaler: Autoscaler | None = None) -> Autoscaler:
    """Run until SIGTERM/SIGINT; drains in flight are handed back to their queues on the way out.

    `scaler`: one built by the caller (inside a pod: `in_cluster.build`, KEDA scales the
    workers); default the local cluster's. `port`: of the metrics."""
    scaler = scaler or build(spec, dry_run=dry_run)
    if metrics_port and not once:
        port = serve_metrics(spec, scaler.metrics, port)
        log.info("metrics on http://%s:%d/metrics", spec.cluster.listen_host, port)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    derived = scaler.derived()
    log.info("autoscaling queues %s every %.1fs (stabilization %.0fs, step %d, memory floor %d MiB, "
             "look-ahead %.0fs)%s", ", ".join(spec.queues), derived.value("interval"),
             derived.value("stabilization_window"), derived.value("scale_up_max_step"),
             derived.value("memory_floor_mib"), spec.autoscaling.prewarm_lookahead,
             " [dry run]" if dry_run else "")
    for s in derived.settings:
        log.info("autoscaling.%s = %g (%s): %s", s.key, s.value, s.source, s.reason)
    try:
        scaler.run(stop, once=once)
    finally:
        if scaler.wakeup is not None:
            scaler.wakeup.close()
        scaler.signals.close()
    return scaler


def main(argv: list[str] | None = None) -> int:
    from airscale.errors import AirscaleError
    from airscale.spec import load_spec

    ap = argparse.ArgumentParser(prog="python -m airscale.autoscale.loop")
    ap.add_argument("--spec", required=True)
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run_forever(load_spec(args.spec), dry_run=args.dry_run)
    except AirscaleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
