"""statsd lines from Airflow 3.3.2 (captured on a real cluster) -> Prometheus samples."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from airscale.observe.exporter import StatsdCollector
from airscale.observe.statname import add_component
from airscale.observe.statsd import BUCKETS, BadLine, Sample, Store, parse_line


@pytest.mark.parametrize("line, expected", [
    pytest.param("airflow.ti.finish,dag_id=etl,task_id=load,state=failed,component=worker-default-1:1|c",
                 Sample("airflow_ti_finish", "counter", (("component", "worker-default-1"), ("dag_id", "etl"),
                                                         ("state", "failed"), ("task_id", "load")), 1.0),
                 id="counter-with-tags"),
    pytest.param("airflow.executor.open_slots,status=open,executor_class_name=CeleryExecutor,component=scheduler-2:32|g",
                 Sample("airflow_executor_open_slots", "gauge",
                        (("component", "scheduler-2"), ("executor", "CeleryExecutor"), ("status", "open")), 32.0),
                 id="gauge-renamed-tag"),
    pytest.param("airflow.scheduler.critical_section_duration,component=scheduler-1:12.5|ms",
                 Sample("airflow_scheduler_critical_section_duration_seconds", "histogram",
                        (("component", "scheduler-1"),), 0.0125), id="timer-ms-to-seconds"),
    pytest.param("airflow.dagrun.duration.failed,dag_id=etl,run_type=manual:4216.1|ms",
                 Sample("airflow_dagrun_duration_seconds", "histogram",
                        (("dag_id", "etl"), ("run_type", "manual"), ("state", "failed")), 4.2161),
                 id="state-split-from-name"),
    pytest.param("airflow.SchedulerJob_start:1|c",
                 Sample("airflow_job_start", "counter", (("job", "SchedulerJob"),), 1.0), id="job-name-split"),
    pytest.param("airflow.dag_processing.last_run.seconds_ago,file_path=/x/y.py,file_name=y.py:3|g",
                 Sample("airflow_dag_processing_last_run_seconds_ago", "gauge", (("file", "y.py"),), 3.0),
                 id="unbounded-tag-dropped"),
    pytest.param("airflow.dagrun.dependency-check,dag_id=a,run_type=manual:2|ms",
                 Sample("airflow_dagrun_dependency_check_seconds", "histogram", (("run_type", "manual"),), 0.002),
                 id="dash-in-name-dag-dropped"),
    # per-task and per-file timers that nothing reads per task or file: fewer series
    pytest.param("airflow.task.scheduled_duration,dag_id=etl,task_id=load,queue=default,component=scheduler-1:80|ms",
                 Sample("airflow_task_scheduled_duration_seconds", "histogram",
                        (("component", "scheduler-1"), ("queue", "default")), 0.08),
                 id="queue-wait-by-queue"),
    pytest.param("airflow.task.duration,dag_id=etl,task_id=load,component=worker-default-1:1500|ms",
                 Sample("airflow_task_duration_seconds", "histogram",
                        (("component", "worker-default-1"), ("dag_id", "etl"), ("task_id", "load")), 1.5),
                 id="task-duration-stays-per-task"),
    pytest.param("airflow.dag_processing.last_duration,file_name=y.py,bundle_name=dags-folder:250|ms",
                 Sample("airflow_dag_processing_last_duration_seconds", "gauge",
                        (("bundle", "dags-folder"), ("file", "y.py")), 0.25),
                 id="last-duration-is-a-gauge"),
    pytest.param("airflow.ti_failures:1|c|@0.5", Sample("airflow_ti_failures", "counter", (), 2.0), id="sample-rate"),
    pytest.param("airflow.pool.open_slots:-3|g", Sample("airflow_pool_open_slots", "gauge", (), -3.0, delta=True),
                 id="signed-gauge-is-delta"),
])
def test_parse_line(line, expected):
    got = parse_line(line)
    assert got.name == expected.name and got.kind == expected.kind and got.labels == expected.labels
    assert got.value == pytest.approx(expected.value) and got.delta == expected.delta


@pytest.mark.parametrize("line", [
    pytest.param("garbage", id="no-colon"),
    pytest.param("airflow.x:abc|c", id="bad-value"),
    pytest.param("airflow.x:1|zz", id="bad-type"),
    pytest.param("airflow.x:nan|g", id="nan"),
])
def test_bad_lines_raise(line):
    with pytest.raises(BadLine):
        parse_line(line)


def scrape(store: Store) -> dict[tuple, float]:
    reg = CollectorRegistry()
    reg.register(StatsdCollector(store))
    out = {}
    for fam in reg.collect():
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_store_counts_gauges_and_histograms():
    st = Store()
    st.feed("airflow.ti.finish,dag_id=a,task_id=t,state=failed:1|c\n"
            "airflow.ti.finish,dag_id=a,task_id=t,state=failed:1|c\n"
            "airflow.pool.open_slots,pool_name=p:10|g\nairflow.pool.open_slots,pool_name=p:-4|g\n"
            "airflow.task.duration,dag_id=a,task_id=t:1500|ms\nnot a line\n")
    m = scrape(st)
    assert m[("airflow_ti_finish_total", (("dag_id", "a"), ("state", "failed"), ("task_id", "t")))] == 2
    assert m[("airflow_pool_open_slots", (("pool", "p"),))] == 6
    h = (("dag_id", "a"), ("task_id", "t"))
    assert m[("airflow_task_duration_seconds_count", h)] == 1
    assert m[("airflow_task_duration_seconds_bucket", (("dag_id", "a"), ("le", "1.0"), ("task_id", "t")))] == 0
    assert m[("airflow_task_duration_seconds_bucket", (("dag_id", "a"), ("le", "2.5"), ("task_id", "t")))] == 1
    # The by-state total exists at 0 for every state before any task finished, so increase() sees a first failure.
    assert m[("airscale_task_finished_total", (("state", "failed"),))] == 2
    assert m[("airscale_task_finished_total", (("state", "success"),))] == 0
    assert m[("airscale_statsd_dropped_total", (("reason", "bad_line"),))] == 1


def test_cardinality_is_bounded():
    st = Store(max_series=10)
    st.feed("\n".join(f"airflow.ti.start,dag_id=d{i},task_id=t:1|c" for i in range(50)))
    m = scrape(st)
    assert len([k for k in m if k[0] == "airflow_ti_start_total"]) == 10
    assert m[("airscale_statsd_dropped_total", (("reason", "cardinality"),))] == 40


def test_series_of_the_per_task_timers_do_not_grow_with_the_tasks():
    """A scheduler's and a dag-processor's timers for 300 tasks and 300 files: the queue wait
    and the dependency check stay one histogram, the parse time one gauge per file; only the
    task duration, which the DAG dashboard reads per task, keeps a histogram per task."""
    st = Store()
    for i in range(300):
        st.feed(f"airflow.task.scheduled_duration,dag_id=d{i},task_id=t,queue=default:80|ms\n"
                f"airflow.dagrun.dependency-check,dag_id=d{i},run_type=manual:3|ms\n"
                f"airflow.dag_processing.last_duration,file_name=f{i}.py:250|ms\n"
                f"airflow.task.duration,dag_id=d{i},task_id=t:900|ms")
    m = scrape(st)
    per_label_set = len(BUCKETS) + 3  # the buckets, +Inf, sum and count

    def series(family):
        return len([k for k in m if k[0].startswith(family)])
    assert series("airflow_task_scheduled_duration_seconds") == per_label_set
    assert series("airflow_dagrun_dependency_check_seconds") == per_label_set
    assert series("airflow_dag_processing_last_duration_seconds") == 300
    assert series("airflow_task_duration_seconds") == 300 * per_label_set
    assert m[("airflow_task_scheduled_duration_seconds_count", (("queue", "default"),))] == 300
    assert m[("airflow_dag_processing_last_duration_seconds", (("file", "f7.py"),))] == pytest.approx(0.25)


def test_type_conflict_is_dropped_not_mixed():
    st = Store()
    st.feed("airflow.x:1|c\nairflow.x:5|g")
    m = scrape(st)
    assert m[("airflow_x_total", ())] == 1
    assert m[("airscale_statsd_dropped_total", (("reason", "type_conflict"),))] == 1


def test_output_is_valid_exposition():
    st = Store()
    st.feed("airflow.ti.finish,dag_id=a,task_id=t,state=success:1|c\nairflow.task.duration:10|ms")
    reg = CollectorRegistry()
    reg.register(StatsdCollector(st))
    text = generate_latest(reg).decode()
    from prometheus_client.parser import text_string_to_metric_families

    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"airflow_ti_finish", "airflow_task_duration_seconds", "airscale_task_finished"} <= names


@pytest.mark.parametrize("host, stat, expected", [
    pytest.param("scheduler-2.vm", "ti.finish,dag_id=a", "ti.finish,dag_id=a,component=scheduler-2", id="tagged"),
    pytest.param("", "scheduler_heartbeat", "scheduler_heartbeat", id="outside-airscale"),
    pytest.param("worker-default-1.vm", "odd name!", "odd_name_,component=worker-default-1", id="never-raises"),
])
def test_name_handler_adds_component(monkeypatch, host, stat, expected):
    monkeypatch.setenv("AIRSCALE_HOSTNAME", host)
    assert add_component(stat) == expected


def test_new_counter_series_read_zero_for_one_scrape():
    now = [100.0]
    st = Store(zero_seconds=3.0, clock=lambda: now[0])
    st.feed("airflow.ti_failures,dag_id=a:1|c\nairflow.task.duration,dag_id=a:500|ms\nairflow.pool.open_slots:4|g")
    m = scrape(st)
    assert m[("airflow_ti_failures_total", (("dag_id", "a"),))] == 0
    assert m[("airflow_task_duration_seconds_count", (("dag_id", "a"),))] == 0
    assert m[("airflow_pool_open_slots", ())] == 4  # gauges are not delayed
    now[0] += 3.0
    m = scrape(st)
    assert m[("airflow_ti_failures_total", (("dag_id", "a"),))] == 1
    assert m[("airflow_task_duration_seconds_count", (("dag_id", "a"),))] == 1
    st.feed("airflow.ti_failures,dag_id=a:1|c")  # an existing series is never delayed again
    assert scrape(st)[("airflow_ti_failures_total", (("dag_id", "a"),))] == 2
