"""What a soak shows, decided from what was recorded (pure): the issue's properties as checks.

- **Availability**: the share of probes of each endpoint answered (HTTP 200) within
  `ANSWER_WITHIN_S`; the REST API's must be at least `MIN_AVAILABILITY`.
- **Nothing lost or stuck**: every triggered DAG run is in the database and ended (`success`),
  none still queued or running when the soak's drain time is over.
- **Every task succeeds**: each task instance of the soak's runs ends in `success`; a retry
  (an earlier try in `task_instance_history`) is allowed only when that try ran while an
  injected fault was active: between the fault and its recovery plus `RETRY_GRACE_S` (a worker
  killed mid-task fails its tasks once their heartbeat times out, after the worker is back).
- **Memory flat**: no component's PSS grows by more than `MAX_GROWTH` from the end of warm-up
  to the end, nor within any of its processes that lived long enough (`memory_growth`). Both
  ends are medians of a few samples, so one sample taken while a task process existed does not
  decide.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

ANSWER_WITHIN_S = 2.0
MIN_AVAILABILITY = 0.999
MAX_GROWTH = 0.10
# A try interrupted by a fault ends when its heartbeat times out (ha.task_heartbeat_timeout)
# and the scheduler notices (detection interval): it may end this long after the recovery.
RETRY_GRACE_S = 180.0
SAMPLES_PER_END = 3
# A process's growth is judged over at least this share of the time after warm-up.
MIN_SPAN_SHARE = 0.25
# A component restarted during the soak is measured from this long after its (new) start.
SETTLE_S = 120.0


@dataclass(frozen=True)
class ProbeObs:
    at: float
    endpoint: str
    latency_s: float
    ok: bool


@dataclass(frozen=True)
class FaultObs:
    kind: str
    component: str
    at: float
    detail: str
    recovered_at: float | None  # None: not healthy again by the end

    @property
    def recovery_s(self) -> float | None:
        return None if self.recovered_at is None else self.recovered_at - self.at


@dataclass(frozen=True)
class TryObs:
    """One try of a task instance: the latest (task_instance) or an earlier one (history)."""

    run_id: str
    task_id: str
    map_index: int
    try_number: int
    state: str | None
    start: float | None
    end: float | None


@dataclass(frozen=True)
class MemorySample:
    at: float
    component: str
    pid: int
    pss_mib: float  # the component's process tree
    segment_mib: float = 0.0  # of which in PostgreSQL's shared buffers segment (memory.smaps_pss)

    @property
    def own_mib(self) -> float:
        """What the verdict measures: the tree without the preallocated shared buffers, which
        fill up to their configured size as the database grows and are reported apart."""
        return self.pss_mib - self.segment_mib


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class Verdict:
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


def availability(probes: Iterable[ProbeObs], endpoint: str, within_s: float = ANSWER_WITHIN_S) -> tuple[int, int]:
    """(answered within `within_s`, all) probes of `endpoint`."""
    mine = [p for p in probes if p.endpoint == endpoint]
    return sum(1 for p in mine if p.ok and p.latency_s <= within_s), len(mine)


def fault_window(f: FaultObs, end: float, grace_s: float = RETRY_GRACE_S) -> tuple[float, float]:
    """When a try may have been interrupted by fault `f` (it ran inside this window)."""
    return f.at - 1.0, (f.recovered_at if f.recovered_at is not None else end) + grace_s


def unexplained_retries(earlier: Sequence[TryObs], faults: Sequence[FaultObs], end: float) -> list[TryObs]:
    """Earlier tries (retried) that ran at no time an injected fault was active."""
    windows = [fault_window(f, end) for f in faults]
    out = []
    for t in earlier:
        start = t.start if t.start is not None else t.end
        stop = t.end if t.end is not None else start
        if start is None or not any(start <= hi and stop >= lo for lo, hi in windows):
            out.append(t)
    return out


def by_state_and_try(latest: Sequence[TryObs]) -> dict[tuple[str, int], int]:
    """Task instances by final state and try number."""
    return dict(Counter((t.state or "none", t.try_number) for t in latest))


class Growth(NamedTuple):
    base_mib: float  # median of the first samples from `since`
    final_mib: float  # median of the last samples of the same process
    share: float  # (final - base) / base
    since: float  # when the baseline was taken
    until: float  # the last sample measured


def memory_growth(samples: Sequence[MemorySample], warmup_end: float,
                  settle_s: float = SETTLE_S) -> dict[str, Growth]:
    """component -> its largest growth (share) of:

    - the component from the end of warm-up to the end, whichever process holds it then;
    - each of its processes (one PID) that lived long enough to say: the one that ran from the
      start from `warmup_end`; one a fault (re)started from `settle_s` after its start (a fresh
      process fills its caches again, as the cluster did during warm-up; the soak passes the
      warm-up's length), when what is left of its life spans `MIN_SPAN_SHARE` of the time after
      warm-up. So a leak is caught in a process that a fault later ended, and a restart that
      brings a component back bigger than it was is caught too.

    Each end is the median of `SAMPLES_PER_END` samples; a component with fewer than twice that
    after warm-up is left out."""
    out: dict[str, Growth] = {}
    if not samples:
        return out
    min_span = MIN_SPAN_SHARE * max(0.0, max(s.at for s in samples) - warmup_end)
    for c in sorted({s.component for s in samples}):
        mine = sorted((s for s in samples if s.component == c), key=lambda s: s.at)
        lives: list[list[MemorySample]] = []
        for s in mine:
            if lives and lives[-1][-1].pid == s.pid:
                lives[-1].append(s)
            else:
                lives.append([s])
        spans = [[s for s in mine if s.at >= warmup_end]]
        for i, life in enumerate(lives):
            since = warmup_end if i == 0 else max(warmup_end, life[0].at + settle_s)
            after = [s for s in life if s.at >= since]
            if after and after[-1].at - after[0].at >= min_span:
                spans.append(after)
        for span in spans:
            if len(span) < 2 * SAMPLES_PER_END:
                continue  # too short-lived to say anything about growth
            base = statistics.median(s.own_mib for s in span[:SAMPLES_PER_END])
            final = statistics.median(s.own_mib for s in span[-SAMPLES_PER_END:])
            g = Growth(base, final, (final - base) / base if base > 0 else 0.0, span[0].at, span[-1].at)
            if c not in out or g.share > out[c].share:
                out[c] = g
    return out


def judge(probes: Sequence[ProbeObs], faults: Sequence[FaultObs], triggered: Sequence[str],
          run_states: dict[str, str], latest: Sequence[TryObs], earlier: Sequence[TryObs],
          samples: Sequence[MemorySample], warmup_end: float, end: float, settle_s: float = SETTLE_S,
          min_availability: float = MIN_AVAILABILITY, max_growth: float = MAX_GROWTH,
          endpoints: Sequence[str] = ("rest", "execution")) -> Verdict:
    v = Verdict()
    for e in endpoints:
        ok, n = availability(probes, e)
        share = ok / n if n else 0.0
        gate = e == "rest"
        v.checks.append(Check(f"availability {e}", (share >= min_availability and n > 0) if gate else True,
                              f"{ok}/{n} probes answered within {ANSWER_WITHIN_S:g}s ({share:.3%})"
                              + (f"; needs >= {min_availability:.1%}" if gate else "; reported")))
    lost = [r for r in triggered if r not in run_states]
    stuck = {r: s for r, s in run_states.items() if s not in ("success", "failed")}
    failed = {r: s for r, s in run_states.items() if s == "failed"}
    v.checks.append(Check("no DAG run lost", not lost, f"{len(triggered)} triggered, {len(lost)} not in the database"
                          + (f": {', '.join(lost[:5])}" if lost else "")))
    v.checks.append(Check("no DAG run stuck", not stuck, f"{len(stuck)} not finished at the end"
                          + (f": {dict(list(stuck.items())[:5])}" if stuck else "")))
    v.checks.append(Check("every DAG run succeeded", not failed, f"{len(run_states) - len(failed)} succeeded, "
                          f"{len(failed)} failed" + (f": {', '.join(list(failed)[:5])}" if failed else "")))
    not_ok = [t for t in latest if t.state != "success"]
    v.checks.append(Check("every task instance succeeded", not not_ok and bool(latest),
                          f"{len(latest) - len(not_ok)}/{len(latest)} success"
                          + (f"; others: {dict(Counter(t.state for t in not_ok))}" if not_ok else "")))
    bad = unexplained_retries(earlier, faults, end)
    v.checks.append(Check("every retry caused by an injected fault", not bad,
                          f"{len(earlier)} retried tries, {len(bad)} outside every fault's window"
                          + (f": {[(t.run_id, t.task_id, t.try_number) for t in bad[:5]]}" if bad else "")))
    unrecovered = [f for f in faults if f.recovered_at is None]
    v.checks.append(Check("every fault recovered", not unrecovered,
                          f"{len(faults) - len(unrecovered)}/{len(faults)} recovered"
                          + (f"; not: {[f.component for f in unrecovered]}" if unrecovered else "")))
    growth = memory_growth(samples, warmup_end, settle_s)
    grown = {c: g.share for c, g in growth.items() if g.share > max_growth}
    v.checks.append(Check(f"no component's memory grew more than {max_growth:.0%}", not grown,
                          f"{len(growth)} components measured" + (
                              "; " + ", ".join(f"{c} +{g:.0%}" for c, g in sorted(grown.items())) if grown else "")))
    return v
