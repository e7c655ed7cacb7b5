"""Poll fast right after the scheduler did something, slowly when it is quiet.

Airflow's scheduler sleeps `scheduler_idle_sleep_time` after every loop that queued nothing
and processed no executor event. That one number is almost all of the gap between two tasks
of a chain (1 s by default: ~1.04 s gaps) and also what a quiet scheduler costs (0.01 s: 0.10 s
gaps but ~50 % of a core doing nothing). Pacing makes it two numbers: the scheduler sleeps
`busy_sleep` while work it just queued may finish at any moment (for `hot_seconds` after it
queued a task or saw one start or end) and while few tasks are running, and the configured
idle sleep otherwise. A quiet cluster costs what the plan's idle sleep costs; a chain of short
tasks gets the short sleep.

The decision (`Pacing.next_sleep`) is pure. `install` wraps the scheduler's `_do_scheduling`
to feed it and sets the runner's idle sleep for the loop's own `time.sleep`, which reads it
every loop; nothing else of the scheduler changes. Installed by airscale.runtime.airflow_entry
when `[airscale] scheduler_busy_sleep` is set (the plan sets it).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class Pacing:
    idle_sleep: float  # the plan's scheduler_idle_sleep_time: what a quiet scheduler sleeps
    busy_sleep: float  # sleep between idle loops while hot
    hot_seconds: float = 3.0  # how long after activity the scheduler stays hot
    # Above this many running tasks the worker slots, not the scheduler's polling, bound how
    # soon the next task starts, and the loops are rarely idle anyway: stay at the idle sleep
    # and leave the CPU to the tasks.
    max_running: int = 4
    last_activity: float = -math.inf
    seen: set = field(default_factory=set)

    def next_sleep(self, now: float, queued: int, running: set) -> float:
        """Seconds to sleep after an idle loop, given this loop's queued count and the keys
        of the task instances the executors run now."""
        if queued or running != self.seen:
            # Queued something, or a task started or ended: more may follow at once.
            self.last_activity = now
        self.seen = set(running)
        hot = now - self.last_activity <= self.hot_seconds and len(running) <= self.max_running
        return self.busy_sleep if hot else self.idle_sleep


def install(busy_sleep: float, hot_seconds: float, max_running: int) -> None:
    """Wrap SchedulerJobRunner._do_scheduling (called once per scheduler loop)."""
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    original = SchedulerJobRunner._do_scheduling
    if getattr(original, "_airscale_original", None) is not None:
        return

    def _do_scheduling(self: Any, session: Any) -> int:
        queued = original(self, session)
        try:
            pacing = getattr(self, "_airscale_pacing", None)
            if pacing is None:
                pacing = Pacing(self._scheduler_idle_sleep_time, busy_sleep, hot_seconds, max_running)
                self._airscale_pacing = pacing
                log.info("airscale pacing: sleep %.3f s for %.1f s after activity with at most %d "
                         "running, %.3f s otherwise", busy_sleep, hot_seconds, max_running, pacing.idle_sleep)
            running: set = set()
            for executor in self.executors:
                running |= set(executor.running)
            self._scheduler_idle_sleep_time = pacing.next_sleep(time.monotonic(), queued, running)
        except Exception:  # pacing must never stop the scheduler
            log.warning("airscale pacing failed; keeping the scheduler's sleep", exc_info=True)
        return queued

    _do_scheduling._airscale_original = original  # type: ignore[attr-defined]
    SchedulerJobRunner._do_scheduling = _do_scheduling
