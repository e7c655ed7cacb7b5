"""When the soak injects which fault (pure): a schedule drawn from a seed.

Production faults do not wait for the previous one to heal, nor come in a fixed order. The
schedule draws the gaps between faults from an exponential distribution (a Poisson process of
`mean_gap_s`), floored at `min_gap_s` so two faults never land in the same second, and the kinds
in shuffled rounds: every kind once per round, in a random order, so that a soak long enough for
one round hits every part, and no part twice before every other once. Which of several
components of a kind is hit (one of the schedulers, one of the api-servers) is drawn here too
(`pick`), so that a seed names the whole run: the same seed, the same faults at the same times.

No fault is planned during warm-up (the memory baseline is taken at its end) nor in the last
`quiet_s` seconds (the last fault must have time to heal before the verdict).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

SCHEDULER = "scheduler"
WORKER = "worker"
API_SERVER = "api-server"
DAG_PROCESSOR = "dag-processor"
TRIGGERER = "triggerer"
REDIS = "redis"
POSTGRES_PRIMARY = "postgres-primary"

# The default profile's faults; `ha` adds the PostgreSQL primary.
DEFAULT_KINDS = (SCHEDULER, WORKER, API_SERVER, DAG_PROCESSOR, TRIGGERER, REDIS)
HA_KINDS = (*DEFAULT_KINDS, POSTGRES_PRIMARY)


@dataclass(frozen=True)
class PlannedFault:
    at_s: float  # seconds after the soak started
    kind: str
    pick: float  # in [0, 1): which of the candidates of `kind` (`choose`)


def kinds_for(profile: str) -> tuple[str, ...]:
    return HA_KINDS if profile == "ha" else DEFAULT_KINDS


def plan(seed: int, duration_s: float, warmup_s: float, quiet_s: float, mean_gap_s: float,
         min_gap_s: float, kinds: tuple[str, ...]) -> list[PlannedFault]:
    """The faults of a soak of `duration_s` seconds, in time order."""
    if not kinds or mean_gap_s <= 0:
        return []
    rng = random.Random(seed)
    out: list[PlannedFault] = []
    t = warmup_s
    rounds: list[str] = []
    while True:
        t += max(min_gap_s, rng.expovariate(1.0 / mean_gap_s))
        if t > duration_s - quiet_s:
            return out
        if not rounds:
            rounds = list(kinds)
            rng.shuffle(rounds)
        out.append(PlannedFault(round(t, 3), rounds.pop(0), rng.random()))


def choose(candidates: list[str], pick: float) -> str | None:
    """The candidate `pick` names, among `candidates` sorted by name (None: there is none)."""
    if not candidates:
        return None
    ordered = sorted(candidates)
    return ordered[min(len(ordered) - 1, int(pick * len(ordered)))]
