"""Benchmark figures and generated DAG files (pure parts)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest

from airscale.bench.metrics import TaskRow, chain_gaps, figures, percentile
from airscale.bench.report import ratio
from airscale.bench.scenarios import FULL, QUICK, Scenario, dag_file

T0 = datetime(2026, 11, 30, tzinfo=timezone.utc)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


@pytest.mark.parametrize(
    "values, p, expected",
    [
        pytest.param([1, 2, 3, 4], 50, 2.5, id="median-even"),
        pytest.param([5], 95, 5, id="one"),
        pytest.param([0, 10], 95, 9.5, id="interpolated"),
        pytest.param([3, 1, 2], 0, 1, id="unsorted-min"),
    ],
)
def test_percentile(values, p, expected):
    assert percentile(values, p) == pytest.approx(expected)


def test_percentile_empty_is_nan():
    assert math.isnan(percentile([], 50))


def test_chain_gaps_in_run_order():
    rows = [TaskRow("t2", "success", at(2), at(2.5), at(3)),
            TaskRow("t0", "success", at(0), at(0.1), at(1)),
            TaskRow("t1", "success", at(1), at(1.2), at(2))]
    assert chain_gaps(rows) == pytest.approx([0.2, 0.5])


def test_figures():
    rows = [TaskRow(f"t{i}", "success", at(0), at(i + 0.5), at(i + 1)) for i in range(4)]
    rows.append(TaskRow("bad", "failed", at(0), at(1), at(2)))
    f = figures("fanout-5", "fanout", "stock", 1, rows, scheduler_cpu_s=1.0, cluster_cpu_s=5.0)
    assert f.wall_s == 4 and f.succeeded == 4 and f.tasks == 5
    assert f.throughput == pytest.approx(1.0)
    assert f.gaps == []
    assert f.pct("queue_waits", 50) == pytest.approx(1.5)
    assert f.cpu_per_task == pytest.approx(1.0)


@pytest.mark.parametrize(
    "stock, tuned, better, expected",
    [
        pytest.param(40.0, 10.0, "lower", 4.0, id="wall-4x"),
        pytest.param(4.0, 10.0, "higher", 2.5, id="throughput-2.5x"),
        pytest.param(math.nan, 1.0, "lower", math.nan, id="missing"),
    ],
)
def test_ratio(stock, tuned, better, expected):
    r = ratio(stock, tuned, better)
    assert (math.isnan(r) and math.isnan(expected)) or r == pytest.approx(expected)


@pytest.mark.parametrize("scenario", [*FULL, *QUICK], ids=lambda s: s.name)
def test_dag_file_defines_the_scenario(tmp_path, scenario: Scenario):
    """Airflow's own DagBag loads the generated file into a DAG of the right shape."""
    from airflow.dag_processing.dagbag import DagBag

    (tmp_path / f"{scenario.dag_id}.py").write_text(dag_file(scenario))
    bag = DagBag(dag_folder=str(tmp_path))
    assert not bag.import_errors
    dag = bag.dags[scenario.dag_id]
    assert len(dag.tasks) == scenario.tasks
    edges = sum(len(t.downstream_task_ids) for t in dag.tasks)
    assert edges == (scenario.tasks - 1 if scenario.kind == "chain" else 0)
    assert dag.max_active_tasks == scenario.tasks
