"""The bench's stock cluster: airscale's extra derived settings go back to Airflow's defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from airscale.bench.scenarios import QUICK
from airscale.bench.specs import BenchConfig, bench_spec
from airscale.bench.stock import stock_overrides


@pytest.mark.parametrize(
    "derived, expected, left",
    [
        pytest.param({"scheduler": {"scheduler_idle_sleep_time": 0.1}},
                     {"scheduler": {"scheduler_idle_sleep_time": "1"}}, [], id="restored-to-default"),
        pytest.param({"core": {"executor": "CeleryExecutor", "dags_folder": "/x"}}, {}, [], id="needed-kept"),
        pytest.param({"database": {"sql_alchemy_conn": "postgresql://"}}, {}, [], id="needed-section-kept"),
        pytest.param({"celery_broker_transport_options": {"visibility_timeout": 30}},
                     {"celery_broker_transport_options": {"visibility_timeout": 86400}}, [], id="code-default"),
        pytest.param({"celery_broker_transport_options": {"unacked_restore_throttle": 1}}, {},
                     ["celery_broker_transport_options.unacked_restore_throttle"], id="no-default-reported"),
    ],
)
def test_stock_overrides(derived, expected, left):
    assert stock_overrides(derived) == (expected, left)


def test_bench_clusters_differ_only_by_plan_and_restored_defaults(tmp_path: Path):
    cfg = BenchConfig(QUICK, 1, tmp_path)
    stock, tuned = bench_spec(cfg, "stock"), bench_spec(cfg, "tuned")
    assert not stock.tuning.enabled and tuned.tuning.enabled
    assert stock.queues == tuned.queues and stock.schedulers == tuned.schedulers
    assert stock.cluster.base_port != tuned.cluster.base_port
    assert stock.airflow_config.get("dag_processor", {}).get("refresh_interval") == "300"
    # Both send statsd to the bench's own listener on their own port; nothing else is set on tuned.
    assert set(tuned.airflow_config) == {"metrics"}
    assert stock.airflow_config["metrics"]["statsd_on"] is True
    assert stock.airflow_config["metrics"]["statsd_port"] != tuned.airflow_config["metrics"]["statsd_port"]
    assert stock.dags_folder != tuned.dags_folder
