"""Which unacknowledged broker messages the reclaimer gives back, and when it refuses to decide."""

from __future__ import annotations

import pytest

from airscale.ha.reclaim import Unacked, claimed_ids, lost, orphans, skip_reason, stranded

NOW = 1000.0


@pytest.mark.parametrize(
    "unacked, claimed, expected",
    [
        pytest.param([Unacked("a", "t1", NOW - 30)], set(), ["a"], id="old-unclaimed-is-orphan"),
        pytest.param([Unacked("a", "t1", NOW - 30)], {"t1"}, [], id="claimed-by-live-worker-stays"),
        pytest.param([Unacked("a", "t1", NOW - 2)], set(), [], id="too-young-to-judge"),
        pytest.param([Unacked("b", "t2", NOW - 20), Unacked("a", "t1", NOW - 40)], set(), ["a", "b"],
                     id="oldest-first"),
        pytest.param([Unacked("a", None, NOW - 30)], {"t1"}, ["a"], id="unreadable-payload-unclaimed"),
        pytest.param([], set(), [], id="nothing"),
    ],
)
def test_orphans(unacked, claimed, expected):
    assert orphans(unacked, claimed, NOW, min_age=10) == expected


@pytest.mark.parametrize(
    "running, answered, stopping, skip",
    [
        pytest.param({"worker-default-1", "worker-default-2"}, {"worker-default-1", "worker-default-2"}, set(),
                     None, id="all-answered"),
        pytest.param({"worker-default-1", "worker-default-2"}, {"worker-default-1"}, set(),
                     "no answer from running worker(s): worker-default-2", id="silent-worker-blocks"),
        pytest.param({"worker-default-1"}, {"worker-default-1", "remote-1"}, set(), None, id="extra-remote-ok"),
        pytest.param({"worker-default-1"}, {"worker-default-1"}, {"worker-default-2"},
                     "worker(s) stopping: worker-default-2", id="stopping-worker-blocks"),
        pytest.param(set(), set(), set(), None, id="no-workers-all-dead"),
    ],
)
def test_skip_reason(running, answered, stopping, skip):
    assert skip_reason(running, answered, stopping) == skip


def test_claimed_ids_needs_both_answers_from_a_node():
    active = {"worker-default-1@h": [{"id": "t1"}], "worker-default-2@h": []}
    reserved = {"worker-default-1@h": [{"id": "t2"}]}
    ids, nodes = claimed_ids(active, reserved)
    assert ids == {"t1", "t2"}
    assert nodes == {"worker-default-1"}  # worker-default-2 did not answer reserved()


def test_claimed_ids_no_reply():
    assert claimed_ids(None, None) == (set(), set())


@pytest.mark.parametrize(
    "queued, seen, expected",
    [
        pytest.param({"a": 45.0}, set(), ["a"], id="queued-long-no-message-anywhere"),
        pytest.param({"a": 45.0}, {"a"}, [], id="message-seen-in-broker-or-worker"),
        pytest.param({"a": 5.0}, set(), [], id="just-queued-message-may-be-in-flight"),
        pytest.param({"b": 31.0, "a": 300.0, "c": 40.0}, {"c"}, ["a", "b"], id="only-the-unseen"),
    ],
)
def test_lost(queued, seen, expected):
    assert lost(queued, seen, min_age=30) == expected


@pytest.mark.parametrize(
    "running, started, expected",
    [
        pytest.param([("t1", "w1.h", 100.0)], {"w1.h": 200.0}, ["t1"], id="began-before-the-restart"),
        pytest.param([("t1", "w1.h", 250.0)], {"w1.h": 200.0}, [], id="began-on-the-new-process"),
        pytest.param([("t1", "w1.h", 199.5)], {"w1.h": 200.0}, ["t1"], id="a-second-before"),
        pytest.param([("t1", "w1.h", 200.4)], {"w1.h": 200.0}, [], id="same-second-as-the-restart"),
        pytest.param([("t1", "remote.h", 100.0)], {"w1.h": 200.0}, [], id="worker-not-supervised-here"),
    ],
)
def test_stranded(running, started, expected):
    assert stranded(running, started) == expected
