"""The soak's warm-up: until the load has gone round its DAGs once, within bounds."""

import pytest

from airscale.soak.runner import SoakConfig
from airscale.soak.workload import profile_load


@pytest.mark.parametrize(
    "minutes, load, dags, warmup_minutes, expected_min",
    [
        pytest.param(60, 4.0, 1000, None, None, id="hour-one-round-of-500-dags"),
        pytest.param(20, 4.0, 1000, None, 20 / 3, id="short-capped-at-a-third"),
        pytest.param(3, 4.0, 1000, None, 1.0, id="minutes-capped"),
        pytest.param(60, 40.0, 1000, None, 6.0, id="fast-load-floor-ten-percent"),
        pytest.param(60, 4.0, 1000, 2.5, 2.5, id="told"),
    ],
)
def test_warmup(minutes, load, dags, warmup_minutes, expected_min):
    cfg = SoakConfig(minutes=minutes, load=load, dags=dags, warmup_minutes=warmup_minutes)
    if expected_min is None:  # every DAG triggered once, then a minute
        _, ld = profile_load(load, dags)
        expected_min = (len(ld.dag_ids) / ld.runs_per_s + 60) / 60
        assert 6 < expected_min < 20
    assert cfg.warmup_s / 60 == pytest.approx(expected_min)
    faults = cfg.plan()
    assert faults and all(f.at_s > cfg.warmup_s for f in faults)
