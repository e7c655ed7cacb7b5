"""Liveness decisions (pure tables): who is killed for silence, and who is spared."""

from __future__ import annotations

import pytest

from airscale.runtime.liveness import START_FACTOR, Memory, Seen, judge, spare_api_servers

NOW = 10_000.0
T = 60.0


@pytest.mark.parametrize("seen, down, memory, kills", [
    pytest.param(Seen(NOW - 500, NOW - 5, "database"), set(), Memory(), [], id="fresh-heartbeat"),
    pytest.param(Seen(NOW - 500, NOW - 61, "database"), set(), Memory(), ["c"], id="heartbeat-older-than-timeout"),
    pytest.param(Seen(NOW - 500, NOW - 61, "database"), {"database"}, Memory(), [],
                 id="database-down-not-judged"),
    pytest.param(Seen(NOW - 30, None, "database"), set(), Memory(), [], id="young-component-left-to-start"),
    pytest.param(Seen(NOW - 61, None, "database"), set(), Memory(), [], id="slow-start-gets-a-longer-allowance"),
    pytest.param(Seen(NOW - 180, None, "database"), set(), Memory(), ["c"], id="never-showed-life-since-start"),
    pytest.param(Seen(NOW - 100, None, "database"), set(), Memory(alive_at={"c": NOW - 200}), [],
                 id="life-before-this-start-does-not-count"),
    pytest.param(Seen(NOW - 100, None, "database"), set(), Memory(alive_at={"c": NOW - 90}), ["c"],
                 id="alive-once-since-start-then-silent"),
    pytest.param(Seen(NOW - 500, None), set(), Memory(watching_since=NOW - 10), [],
                 id="daemon-just-restarted-gives-full-timeout"),
    pytest.param(Seen(NOW - 500, None), set(), Memory(watching_since=NOW - 61), ["c"],
                 id="silent-for-the-timeout-since-the-daemon-started"),
    pytest.param(Seen(NOW - 500, None, "broker"), set(), Memory(alive_at={"c": NOW - 20}), [],
                 id="silent-pass-after-recent-ping"),
    pytest.param(Seen(NOW - 500, None, "broker"), set(), Memory(alive_at={"c": NOW - 70}), ["c"],
                 id="silent-for-longer-than-timeout"),
    pytest.param(Seen(NOW - 500, NOW - 300, "database"), set(),
                 Memory(down=frozenset({"database"})), [], id="database-just-back-gives-full-timeout"),
    pytest.param(Seen(NOW - 500, NOW - 300, "database"), set(),
                 Memory(back_at={"database": NOW - 61}), ["c"], id="full-timeout-after-return-spent"),
    pytest.param(Seen(NOW - 500, None), set(), Memory(alive_at={"c": NOW - 61}), ["c"],
                 id="api-server-silent"),
])
def test_judge(seen, down, memory, kills):
    _, out = judge(NOW, {"c": seen}, down, memory, T)
    assert out == kills


def test_memory_keeps_the_newest_sign_of_life():
    m, _ = judge(NOW, {"c": Seen(NOW - 500, NOW - 5)}, set(), Memory(alive_at={"c": NOW - 50}), T)
    assert m.alive_at["c"] == NOW - 5
    m, _ = judge(NOW + 10, {"c": Seen(NOW - 500, None)}, set(), m, T)
    assert m.alive_at["c"] == NOW - 5


def test_a_dependency_that_comes_back_is_remembered():
    m, _ = judge(NOW, {}, {"broker"}, Memory(), T)
    assert m.down == {"broker"}
    m, _ = judge(NOW + 10, {}, set(), m, T)
    assert m.back_at == {"broker": NOW + 10} and m.down == frozenset()


@pytest.mark.parametrize("silence", [0, 10, 59.9, 60, 61, 600])
def test_kill_exactly_at_the_timeout(silence):
    _, out = judge(NOW, {"c": Seen(NOW - 1000, NOW - silence)}, set(), Memory(), T)
    assert (out == ["c"]) is (silence >= T)


TWO = ["api-server-1", "api-server-2"]


@pytest.mark.parametrize("kills, instances, answered, silent_since, expected", [
    pytest.param(["api-server-1"], TWO, {"api-server-2": NOW}, {"api-server-1": NOW - 70}, ["api-server-1"],
                 id="the-other-answers-kill-the-silent-one"),
    pytest.param(["api-server-1", "api-server-2"], TWO, {}, {"api-server-1": NOW - 70, "api-server-2": NOW - 70}, [],
                 id="both-silent-starved-together-spared"),
    pytest.param(["api-server-1"], TWO, {}, {"api-server-1": NOW - START_FACTOR * T}, ["api-server-1"],
                 id="silent-for-start-factor-timeouts-killed-anyway"),
    pytest.param(["api-server-2"], TWO, {"api-server-1": None}, {"api-server-1": NOW - 20, "api-server-2": NOW - 70},
                 [], id="the-other-restarting-after-a-fault-spare-the-last"),
    pytest.param(["api-server"], ["api-server"], {}, {"api-server": NOW - 70}, ["api-server"],
                 id="single-api-server-as-before"),
    pytest.param(["scheduler-1", "api-server-1"], TWO, {}, {"api-server-1": NOW - 70}, ["scheduler-1"],
                 id="others-untouched"),
])
def test_spare_api_servers(kills, instances, answered, silent_since, expected):
    assert spare_api_servers(kills, instances, NOW, answered, silent_since, T) == expected
