"""When the soak's trigger fires each run: a burst, then the beat."""

import pytest

from airscale.soak.workload import due_at


@pytest.mark.parametrize(
    "k, rate, burst, expected",
    [
        pytest.param(0, 0.5, 0, 0.0, id="first-at-once"),
        pytest.param(3, 0.5, 0, 6.0, id="beat-without-burst"),
        pytest.param(0, 0.5, 4, 0.0, id="burst-first"),
        pytest.param(3, 0.5, 4, 0.0, id="burst-last"),
        pytest.param(4, 0.5, 4, 0.0, id="beat-starts-after-the-burst"),
        pytest.param(6, 0.5, 4, 4.0, id="beat-after-burst"),
    ],
)
def test_due_at(k, rate, burst, expected):
    assert due_at(k, rate, burst) == pytest.approx(expected)
