"""The soak's verdict (airscale.soak.verdict) and the report's pure parts, from recorded data."""

from __future__ import annotations

import pytest

from airscale.soak import verdict
from airscale.soak.report import buckets, longest_outage
from airscale.soak.verdict import FaultObs, MemorySample, ProbeObs, TryObs, judge


def probes(n_ok: int, n_slow: int = 0, n_failed: int = 0, endpoint: str = "rest") -> list[ProbeObs]:
    out = [ProbeObs(float(i), endpoint, 0.05, True) for i in range(n_ok)]
    out += [ProbeObs(float(n_ok + i), endpoint, 3.0, True) for i in range(n_slow)]
    out += [ProbeObs(float(n_ok + n_slow + i), endpoint, 2.0, False) for i in range(n_failed)]
    return out


@pytest.mark.parametrize(
    "ps, answered, total",
    [
        pytest.param(probes(10), 10, 10, id="all"),
        pytest.param(probes(8, n_slow=2), 8, 10, id="slow-do-not-count"),
        pytest.param(probes(7, n_failed=3), 7, 10, id="failed"),
        pytest.param(probes(5, endpoint="execution"), 0, 0, id="other-endpoint"),
        pytest.param([ProbeObs(0, "rest", 2.0, True)], 1, 1, id="exactly-2s-counts"),
    ],
)
def test_availability(ps, answered, total):
    assert verdict.availability(ps, "rest") == (answered, total)


FAULT = FaultObs("worker", "worker-default-1", at=1000.0, detail="kill", recovered_at=1030.0)


@pytest.mark.parametrize(
    "tries, faults, unexplained",
    [
        pytest.param([TryObs("r", "t", -1, 1, "failed", 990.0, 1080.0)], [FAULT], 0, id="ran-through-the-kill"),
        pytest.param([TryObs("r", "t", -1, 1, "failed", 1100.0, 1150.0)], [FAULT], 0, id="within-grace"),
        pytest.param([TryObs("r", "t", -1, 1, "failed", 100.0, 200.0)], [FAULT], 1, id="long-before"),
        pytest.param([TryObs("r", "t", -1, 1, "failed", 1300.0, 1310.0)], [FAULT], 1, id="after-grace"),
        pytest.param([TryObs("r", "t", -1, 1, "failed", 990.0, 1000.0)], [], 1, id="no-fault-at-all"),
        pytest.param([TryObs("r", "t", -1, 1, "failed", None, None)], [FAULT], 1, id="no-times"),
        pytest.param([TryObs("r", "t", -1, 1, "failed", None, 1010.0)], [FAULT], 0, id="end-only"),
        pytest.param([TryObs("r", "t", -1, 1, "failed", 5000.0, 5001.0)],
                     [FaultObs("redis", "redis", 4990.0, "kill", None)], 0, id="unrecovered-runs-to-the-end"),
    ],
)
def test_unexplained_retries(tries, faults, unexplained):
    assert len(verdict.unexplained_retries(tries, faults, end=6000.0)) == unexplained


def samples(component: str, values: list[float], pid: int = 1, start: float = 0.0, step: float = 30.0):
    return [MemorySample(start + i * step, component, pid, v) for i, v in enumerate(values)]


@pytest.mark.parametrize(
    "ss, warmup_end, expected",
    [
        pytest.param(samples("a", [90, 100, 100, 100, 100, 101, 102, 103]), 30.0, {"a": (100, 102, 0.02)},
                     id="flat-after-warmup"),
        pytest.param(samples("a", [100, 100, 100, 130, 130, 130]), 0.0, {"a": (100, 130, 0.30)}, id="grows"),
        pytest.param(samples("a", [500] * 6, pid=1)
                     + samples("a", [50, 80, 90, 100, 100, 100, 105, 105, 105, 105], pid=2, start=200),
                     0.0, {"a": (100, 105, 0.05)}, id="restarted-compared-with-itself-once-settled"),
        pytest.param(samples("a", [500, 500, 500, 510, 520, 530], pid=1)
                     + samples("a", [50, 80, 90, 100, 100], pid=2, start=200),
                     0.0, {"a": (500, 520, 0.04)}, id="restarted-late-the-previous-process-is-judged"),
        pytest.param(samples("a", [500] * 3, pid=1) + samples("a", [50, 80, 90, 100, 100], pid=2, start=200),
                     0.0, {"a": (500, 100, -0.8)}, id="a-restart-that-shrinks-it-is-no-growth"),
        pytest.param(samples("a", [100] * 3, pid=1) + samples("a", [100, 100, 130, 130, 130], pid=2, start=200),
                     0.0, {"a": (100, 130, 0.3)}, id="a-restart-that-brings-it-back-bigger-is-growth"),
        pytest.param(samples("a", [100] * 5, pid=1), 0.0, {}, id="too-few-samples-after-warmup"),
        pytest.param(samples("a", [100] * 4 + [200] * 10, pid=2, start=0.0)
                     + samples("a", [100] * 10, pid=3, start=500.0), 0.0, {"a": (100, 200, 1.0)},
                     id="the-process-that-grew-most-is-shown"),
        pytest.param(samples("a", [100] * 40) + samples("a", [50] * 14 + [100] * 6, pid=2, start=1200.0, step=10.0)
                     + samples("b", [100] * 46), 0.0, {"a": (100, 100, 0.0), "b": (100, 100, 0.0)},
                     id="a-life-shorter-than-a-quarter-of-the-soak-says-nothing"),
        pytest.param(samples("a", [100, 200]), 0.0, {}, id="too-few-samples"),
        pytest.param([MemorySample(i * 30.0, "pg", 1, 100 + 10 * i, 10 * i) for i in range(8)], 0.0,
                     {"pg": (100, 100, 0.0)}, id="shared-buffers-filling-left-out"),
        pytest.param([MemorySample(i * 30.0, "pg", 1, 100 + 10 * i, 5 * i) for i in range(8)], 0.0,
                     {"pg": (105, 130, 25 / 105)}, id="private-growth-beside-shared-buffers-counts"),
    ],
)
def test_memory_growth(ss, warmup_end, expected):
    got = verdict.memory_growth(ss, warmup_end)
    assert set(got) == set(expected)
    for c, (a, b, g) in expected.items():
        assert got[c][0] == pytest.approx(a) and got[c][1] == pytest.approx(b) and got[c][2] == pytest.approx(g)


def ok_tries(n: int) -> list[TryObs]:
    return [TryObs(f"soak-x-{i}", "t", -1, 1, "success", 10.0, 11.0) for i in range(n)]


BASE = {"probes": probes(1000) + probes(1000, endpoint="execution"), "faults": [FAULT], "triggered": ["r1", "r2"],
        "run_states": {"r1": "success", "r2": "success"}, "latest": ok_tries(10), "earlier": [],
        "samples": samples("api-server-1", [300] * 8), "warmup_end": 0.0, "end": 2000.0}


@pytest.mark.parametrize(
    "change, failing",
    [
        pytest.param({}, set(), id="all-good"),
        pytest.param({"probes": probes(998, n_failed=2)}, {"availability rest"}, id="two-in-1000-lost"),
        pytest.param({"probes": probes(999, n_failed=1)}, set(), id="one-in-1000-is-99.9"),
        pytest.param({"probes": probes(500) + probes(100, n_failed=50, endpoint="execution")}, set(),
                     id="execution-reported-not-gated"),
        pytest.param({"run_states": {"r1": "success"}}, {"no DAG run lost"}, id="lost"),
        pytest.param({"run_states": {"r1": "success", "r2": "running"}}, {"no DAG run stuck"}, id="stuck"),
        pytest.param({"run_states": {"r1": "success", "r2": "failed"}}, {"every DAG run succeeded"}, id="failed-run"),
        pytest.param({"latest": [*ok_tries(3), TryObs("r", "t", -1, 2, "failed", 1.0, 2.0)]},
                     {"every task instance succeeded"}, id="failed-task"),
        pytest.param({"latest": []}, {"every task instance succeeded"}, id="no-tasks-is-no-proof"),
        pytest.param({"earlier": [TryObs("r", "t", -1, 1, "failed", 10.0, 20.0)]},
                     {"every retry caused by an injected fault"}, id="unexplained-retry"),
        pytest.param({"faults": [FaultObs("redis", "redis", 1.0, "kill", None)]}, {"every fault recovered"},
                     id="unrecovered"),
        pytest.param({"samples": samples("api-server-1", [300, 300, 300, 340, 340, 340])},
                     {"no component's memory grew more than 10%"}, id="leak"),
    ],
)
def test_judge(change, failing):
    v = judge(**{**BASE, **change})
    assert {c.name for c in v.checks if not c.passed} == failing
    assert v.passed is (not failing)


def test_longest_outage_and_buckets():
    ps = [ProbeObs(0, "rest", 0.1, True), ProbeObs(1, "rest", 2, False), ProbeObs(2, "rest", 2, False),
          ProbeObs(4, "rest", 0.1, True), ProbeObs(5, "rest", 2, False)]
    assert longest_outage(ps, "rest") == 3.0
    assert longest_outage(ps, "execution") == 0.0
    assert buckets([(0.0, 1.0), (59.0, 2.0), (61.0, 3.0)], 0.0) == [(0.0, [1.0, 2.0]), (1.0, [3.0])]
