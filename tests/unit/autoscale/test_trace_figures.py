"""The autoscaling benchmark's figures (pure parts of airscale.bench.autoscale_trace)."""

from __future__ import annotations

import pytest

from airscale.bench.autoscale_trace import cron_minutes, percentile, worker_seconds


@pytest.mark.parametrize(
    "values,q,expected",
    [
        pytest.param([], 0.5, None, id="empty"),
        pytest.param([3.0], 0.95, 3.0, id="one"),
        pytest.param([1.0, 2.0, 3.0, 4.0], 0.5, 2.5, id="median-interpolated"),
        pytest.param(list(range(101)), 0.95, 95.0, id="p95"),
    ],
)
def test_percentile(values, q, expected):
    assert percentile(values, q) == expected


@pytest.mark.parametrize(
    "samples,start,end,expected",
    [
        pytest.param([(0, 1), (10, 3), (20, 1)], 0, 30, 10 + 30 + 10, id="step-function"),
        pytest.param([(0, 2), (5, 2)], 0, 5, 10, id="constant"),
        pytest.param([(-5, 3), (0, 1), (4, 1)], 0, 4, 4, id="samples-before-window-ignored"),
    ],
)
def test_worker_seconds(samples, start, end, expected):
    assert worker_seconds(samples, start, end) == expected


@pytest.mark.parametrize(
    "starts,scheduled_at,expected",
    [
        # Windows start on minute boundaries; the scheduled burst is 180 s in by default.
        pytest.param([3600 * 5 + 58 * 60, 3600 * 6 + 4 * 60], 180, "1,7 * * * *", id="default-trace"),
        pytest.param([3600 * 5 + 58 * 60, 3600 * 6 + 7 * 60], 360, "4,13 * * * *", id="longer-quiet"),
    ],
)
def test_cron_minutes_hit_each_window_scheduled_burst(starts, scheduled_at, expected):
    assert cron_minutes(starts, scheduled_at) == expected
