import json

import pytest

from airscale.runtime.restart_listener import backoff_delay, next_series, record


@pytest.mark.parametrize(
    "crashes, delay",
    [
        pytest.param(1, 1.0, id="first-restart-fast"),
        pytest.param(2, 2.0, id="doubles"),
        pytest.param(5, 16.0, id="keeps-doubling"),
        pytest.param(7, 60.0, id="capped"),
        pytest.param(50, 60.0, id="stays-capped"),
    ],
)
def test_backoff_delay(crashes, delay):
    assert backoff_delay(crashes) == delay


@pytest.mark.parametrize(
    "previous, uptime, series",
    [
        pytest.param(0, 3.0, 1, id="first-crash"),
        pytest.param(3, 3.0, 4, id="quick-crash-extends-series"),
        pytest.param(6, 600.0, 1, id="crash-after-healthy-run-resets"),
    ],
)
def test_series(previous, uptime, series):
    assert next_series(previous, uptime) == series


def test_record_counts_unexpected_exits_only(tmp_path):
    f = tmp_path / "restarts.json"
    record(f, "worker-a-1", "PROCESS_STATE_EXITED", expected=False, uptime=2)
    record(f, "worker-a-1", "PROCESS_STATE_EXITED", expected=False, uptime=2)
    record(f, "worker-a-1", "PROCESS_STATE_EXITED", expected=True)
    record(f, "scheduler-1", "PROCESS_STATE_FATAL", expected=False)
    data = json.loads(f.read_text())
    assert data["worker-a-1"]["restarts"] == 2 and data["worker-a-1"]["series"] == 2
    assert data["scheduler-1"]["fatal"] == 1 and data["scheduler-1"]["restarts"] == 0
