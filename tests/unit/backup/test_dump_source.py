"""Where the `ha` profile's backup dumps from (airscale.backup.take.dump_source): the standby
when it streams and is fresh, else the primary, with the reason."""

from __future__ import annotations

import pytest

from airscale.backup.take import MAX_STANDBY_LAG_BYTES, Node, dump_source, lsn_bytes

P = Node(29692, standby=False, streaming=False, lsn=10_000_000)


def standby(lsn=10_000_000, streaming=True, port=29693) -> Node:
    return Node(port, standby=True, streaming=streaming, lsn=lsn)


@pytest.mark.parametrize("nodes, port, says", [
    pytest.param([P, standby()], 29693, "streaming, 0 bytes behind", id="fresh-standby"),
    pytest.param([standby(), P], 29693, "standby on port 29693", id="order-does-not-matter"),
    pytest.param([P, standby(lsn=10_000_000 - 4096)], 29693, "4096 bytes behind", id="slightly-behind"),
    pytest.param([P, standby(lsn=10_000_000 - MAX_STANDBY_LAG_BYTES - 1)], None, "bytes behind (more than",
                 id="too-far-behind"),
    pytest.param([P, standby(streaming=False)], None, "not streaming", id="not-streaming"),
    pytest.param([P, standby(lsn=None)], None, "replayed nothing", id="no-replay-position"),
    pytest.param([P], None, "no standby answered", id="standby-down"),
    pytest.param([standby()], None, "primary's WAL position is unknown", id="primary-down"),
    pytest.param([], None, "no standby answered", id="nothing-answers"),
    pytest.param([P, standby(lsn=10_000_000 + 10)], 29693, "0 bytes behind", id="standby-read-after-primary"),
])
def test_dump_source(nodes, port, says):
    got, why = dump_source(nodes)
    assert got == port
    assert says in why, why
    if port is None:
        assert why.endswith("dumping from the primary")


@pytest.mark.parametrize("lsn, value", [
    pytest.param("0/0", 0, id="zero"),
    pytest.param("16/B374D848", (0x16 << 32) + 0xB374D848, id="high-and-low"),
    pytest.param(None, None, id="none"),
    pytest.param("", None, id="empty"),
])
def test_lsn_bytes(lsn, value):
    assert lsn_bytes(lsn) == value
