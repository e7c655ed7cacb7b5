"""The many-DAG scenarios (pure parts): the compressed profile, parse figures, statsd lines."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest

from airscale.bench import profile as prof
from airscale.bench.metrics import TaskRow
from airscale.bench.playback import many_dag_file, many_dag_id, many_steps
from airscale.bench.statsd import Sample, parse_packet
from airscale.errors import AirscaleError

T0 = datetime(2026, 11, 30, tzinfo=timezone.utc)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def test_default_profile_adds_up_to_50k_tasks_a_day():
    p = prof.Profile()
    assert p.dags * p.runs_per_dag_per_day * prof.TASKS_PER_RUN == pytest.approx(50_000)
    assert p.period_s == pytest.approx(72 * 60)
    assert p.task_rate == pytest.approx(50_000 / 86_400 * 6)


@pytest.mark.parametrize(
    "profile, runs, first_dags",
    [
        pytest.param(prof.Profile(compression=6, window_s=180), 125, [0, 1, 2], id="default-3-minutes"),
        pytest.param(prof.Profile(dags=2, tasks_per_day=5 * 86_400, compression=1, window_s=3), 3, [0, 1, 0],
                     id="round-robin-wraps"),
        pytest.param(prof.Profile(compression=0.1, window_s=5), 1, [0], id="window-shorter-than-a-step"),
    ],
)
def test_triggers_spread_evenly_round_robin(profile, runs, first_dags):
    plan = prof.triggers(profile)
    assert len(plan) == runs
    assert [i for _, i in plan[: len(first_dags)]] == first_dags
    if len(plan) > 1:
        steps = {round(b[0] - a[0], 9) for a, b in zip(plan, plan[1:])}
        assert steps == {round(1 / profile.run_rate, 9)}
        assert plan[-1][0] < profile.window_s


def _run(run_id: str, t: float, end_offset: float | None, state: str = "success") -> list[tuple[str, TaskRow]]:
    end = at(t + end_offset) if end_offset is not None else None
    return [(run_id, TaskRow(f"t{k}", state if end else "queued", at(t), at(t + 0.5) if end else None,
                             end)) for k in range(prof.TASKS_PER_RUN)]


@pytest.mark.parametrize(
    "rows, runs, backlog, kept_up, drain",
    [
        pytest.param(_run("a", 0, 2) + _run("b", 5, 3), 2, 0, True, 0.0, id="all-done-in-window"),
        pytest.param(_run("a", 0, 2) + _run("b", 9, 3), 2, 5, True, 2.0, id="last-run-ends-after-window"),
        pytest.param(_run("a", 0, 2) + _run("b", 5, None), 2, 5, False, math.nan, id="never-finished"),
        pytest.param(_run("a", 0, 2, "failed"), 1, 0, False, 0.0, id="failed-is-not-keeping-up"),
        pytest.param(_run("a", 0, 2), 40, 195, False, math.nan, id="runs-never-created"),
    ],
)
def test_profile_figures(rows, runs, backlog, kept_up, drain):
    f = prof.profile_figures("stock", prof.Profile(), runs, rows, at(0), at(10))
    assert f.offered_tasks == runs * prof.TASKS_PER_RUN
    assert f.backlog_at_end == backlog
    assert f.kept_up is kept_up
    assert (math.isnan(f.drain_s) and math.isnan(drain)) or f.drain_s == pytest.approx(drain)
    assert f.queue_waits and all(w == pytest.approx(0.5) for w in f.queue_waits if w)


def test_profile_figures_rate_and_run_duration():
    rows = _run("a", 0, 2) + _run("b", 4, 4)
    f = prof.profile_figures("tuned", prof.Profile(), 2, rows, at(0), at(10))
    assert f.achieved_rate == pytest.approx(1.0)
    assert sorted(f.run_seconds) == pytest.approx([2.0, 4.0])
    assert f.failed == 0 and f.succeeded == 10


@pytest.mark.parametrize(
    "parsed, files, interval, cold, pass_s, within",
    [
        pytest.param([at(5), at(20), at(12)], 3, 30, 20.0, 15.0, True, id="fits"),
        pytest.param([at(5), at(50)], 2, 30, 50.0, 45.0, False, id="pass-longer-than-interval"),
        pytest.param([at(5)], 2, 30, 5.0, 0.0, False, id="not-all-parsed"),
        pytest.param([], 2, 30, math.nan, math.nan, False, id="none-parsed"),
    ],
)
def test_parse_figures(parsed, files, interval, cold, pass_s, within):
    f = prof.parse_figures("stock", files, at(0), parsed, interval, 2)
    for got, want in ((f.cold_s, cold), (f.pass_s, pass_s)):
        assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want)
    assert f.within_interval is within


def test_seconds_per_file_counts_processes():
    f = prof.parse_figures("tuned", 3, at(0), [at(1), at(2), at(4)], 30, 2)
    assert f.seconds_per_file == pytest.approx(3 * 2 / 3)


@pytest.mark.parametrize(
    "packet, samples",
    [
        pytest.param(b"airflow.scheduler.scheduler_loop_duration:12.5|ms",
                     [Sample("scheduler.scheduler_loop_duration", 12.5, "ms")], id="timer"),
        pytest.param(b"airflow.dag_processing.total_parse_time:3.2|g\nairflow.ti.start:1|c|@0.5",
                     [Sample("dag_processing.total_parse_time", 3.2, "g"), Sample("ti.start", 1.0, "c")],
                     id="two-lines-and-rate"),
        pytest.param(b"garbage\nairflow.x:notanumber|g\nairflow.y:1", [], id="malformed-skipped"),
        pytest.param(b"other.metric:2|g", [Sample("other.metric", 2.0, "g")], id="no-prefix"),
    ],
)
def test_parse_packet(packet, samples):
    assert parse_packet(packet) == samples


@pytest.mark.parametrize(
    "parse_files, load, steps",
    [
        pytest.param((500, 1000), prof.Profile(), [(500, True, True), (1000, True, False)], id="full"),
        pytest.param((1000,), prof.Profile(), [(500, False, True), (1000, True, False)], id="profile-not-timed"),
        pytest.param((10,), None, [(10, True, False)], id="parse-only"),
        pytest.param((), None, [], id="nothing"),
    ],
)
def test_many_steps(parse_files, load, steps):
    assert many_steps(parse_files, load) == steps


def test_parse_counts():
    from airscale.bench.cli import parse_counts

    assert parse_counts("500, 1000") == (500, 1000)
    assert parse_counts("") == ()
    for bad in ("x", "0", "-5"):
        with pytest.raises(AirscaleError):
            parse_counts(bad)


def test_generated_files_are_distinct_realistic_dags(tmp_path):
    """Airflow's DagBag loads them: distinct ids, 5 tasks, the diamond, profile DAGs active
    and unscheduled, the others paused and hourly."""
    from airflow.dag_processing.dagbag import DagBag

    load = prof.Profile(dags=3)
    for i in range(5):
        (tmp_path / f"{many_dag_id(load, i)}.py").write_text(many_dag_file(load, i))
    (tmp_path / "plain.py").write_text(many_dag_file(None, 7))
    bag = DagBag(dag_folder=str(tmp_path))
    assert not bag.import_errors
    assert set(bag.dags) == {f"airscale_profile_{i:04d}" for i in range(5)} | {"airscale_parse_0007"}
    for dag_id, dag in bag.dags.items():
        assert len(dag.tasks) == prof.TASKS_PER_RUN
        assert dag.get_task("extract").downstream_task_ids == {"transform_0", "transform_1", "transform_2"}
        profile_dag = dag_id in {load.dag_id(i) for i in range(load.dags)}
        assert dag.is_paused_upon_creation is (not profile_dag)
        assert (dag.timetable.__class__.__name__ == "NullTimetable") is profile_dag


def test_report_has_parse_profile_and_loop_figures(tmp_path):
    """The markdown carries the new sections with the figures of each cluster."""
    from airscale.bench.metrics import RunFigures
    from airscale.bench.report import markdown
    from airscale.bench.results import BenchResult
    from airscale.bench.scenarios import QUICK
    from airscale.bench.specs import BenchConfig

    load = prof.Profile(dags=5, compression=3, window_s=10)
    runs = [RunFigures(s.name, v, 1, s.tasks, s.tasks, 2.0, 1.0, loop_ms=[10.0, 20.0, 30.0] if v == "stock" else [5.0])
            for s in QUICK for v in ("stock", "tuned")]
    parses = [prof.parse_figures("stock", 5, at(0), [at(1), at(40)], 30, 2),
              prof.parse_figures("tuned", 5, at(0), [at(2), at(3), at(4), at(5), at(9)], 900, 1)]
    loads = [prof.profile_figures(v, load, 2, _run("a", 0, 2) + _run("b", 5, 3), at(0), at(10))
             for v in ("stock", "tuned")]
    cfg = BenchConfig(QUICK, 1, tmp_path, parse_files=(5,), load=load)
    result = BenchResult(runs, {"stock": 0.01, "tuned": 0.05}, {}, cfg, 0.0, 1.0, {}, [], parses, loads,
                         {"stock": [20.0], "tuned": [18.0]})
    md = markdown(result, "airscale bench --quick", [])
    assert "| scheduler loop p50, ms | 20.00 | 5.00 | 4.00x |" in md
    assert "| 5 | stock | 2 | 39.0 | 40.0 |" in md and md.count("| 30 | no |") == 1
    assert "| 5 | tuned | 1 | 7.0 | 9.0 |" in md and "| 900 | yes |" in md
    assert "## 5 DAGs / 50,000 tasks a day, compressed 3x" in md
    assert "| kept up | yes | yes |" in md


def test_report_has_density_and_folder_figures(tmp_path):
    """Memory per running task and the quiet folder: each cluster's row and the verdicts."""
    from airscale.bench.report import markdown
    from airscale.bench.results import BenchResult
    from airscale.bench.scenarios import QUICK
    from airscale.bench.specs import BenchConfig

    cfg = BenchConfig(QUICK, 1, tmp_path, parse_files=(1000,))
    density = [prof.DensityFigures("stock", 8, 400.0, 1024.0, 8), prof.DensityFigures("tuned", 8, 300.0, 512.0, 8)]
    folders = [prof.FolderFigures("stock", 1000, 60, 0.37, [6.2, 14.0], 31.0, 30, 30),
               prof.FolderFigures("tuned", 1000, 60, 0.021, [1.1, 0.9], 1.3, 15000, 600)]
    result = BenchResult([], {"stock": 0.01, "tuned": 0.02}, {}, cfg, 0.0, 1.0, folders=folders, density=density)
    md = markdown(result, "airscale bench", [])
    assert "| stock | 8 | 8 | 400 | 1024 | 78.0 | 8.0 |" in md
    assert "| tuned | 8 | 8 | 300 | 512 | 26.5 | 16.0 |" in md and "tuned / stock tasks per GiB: 2.00x" in md
    assert "| stock | 1000 | 37.0% (60) | 6.2, 14.0 | 31.0 | 30 | 30 | not met |" in md
    assert "| tuned | 1000 | 2.1% (60) | 1.1, 0.9 | 1.3 | 15000 | 600 | met |" in md


@pytest.mark.parametrize(
    "share,edits,met",
    [(0.02, [1.0, 4.9], True), (0.06, [1.0], False), (0.02, [5.1], False), (0.02, [], False),
     (0.02, [1.0, float("nan")], False)],
)
def test_folder_targets(share, edits, met):
    assert prof.FolderFigures("tuned", 1000, 60, share, edits).met is met
