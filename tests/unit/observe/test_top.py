"""`airscale top` turns Prometheus query results into tables (pure part)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from airscale.observe.top import build_view, render


def vec(label: str, **values: float) -> list[dict]:
    return [{"metric": {label: k}, "value": [0, str(v)]} for k, v in values.items()]


def text(results) -> str:
    buf = io.StringIO()
    Console(file=buf, width=120, color_system=None).print(render(build_view(results), "hdr"))
    return buf.getvalue()


@pytest.mark.parametrize("results, expected, absent", [
    pytest.param({"queued": vec("queue", default=5), "running": vec("queue", default=3),
                  "oldest": vec("queue", default=42.0), "workers": vec("queue", default=2),
                  "workers_max": vec("queue", default=4)},
                 ["default", "5", "3", "42.0 s", "2/4", "no alerts firing"], [], id="busy-queue"),
    pytest.param({"finished": vec("state", success=1.5, failed=0.5),
                  "duration_p95": [{"metric": {}, "value": [0, "0.25"]}],
                  "duration_p50": [{"metric": {}, "value": [0, "NaN"]}]},
                 ["2.00", "failed/s", "- / 250 ms"], [], id="throughput-and-nan"),
    pytest.param({"down": [{"metric": {"component": "scheduler-1"}, "value": [0, "0"]}],
                  "firing": [{"metric": {"alertname": "NoHealthyScheduler", "severity": "critical"}, "value": [0, "1"]}]},
                 ["down: scheduler-1", "NoHealthyScheduler (critical)"], ["no alerts firing"], id="problems"),
])
def test_view(results, expected, absent):
    out = text(results)
    for s in expected:
        assert s in out, (s, out)
    for s in absent:
        assert s not in out
