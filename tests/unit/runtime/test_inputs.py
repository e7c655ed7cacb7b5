"""The apply planner (airscale.runtime.inputs): which components `up` restarts, reloads, starts
or stops, in which order and why; the pools it creates, resizes and deletes."""

from __future__ import annotations

from pathlib import Path

import pytest

from airscale.runtime.component import Component
from airscale.runtime.inputs import (
    RELOAD,
    RESTART,
    START,
    STOP,
    Change,
    PoolChange,
    as_running,
    changed_inputs,
    desired_pools,
    fingerprint,
    parse_keys,
    plan_changes,
    plan_pools,
)

CFG = Path("/d/airflow/airflow.cfg")
PG = Path("/d/postgres/airscale.conf")
PROM = Path("/d/monitoring/prometheus.yml")
SPEC = Path("/s/airscale.yaml")

AIRFLOW_CFG = b"[core]\nparallelism = 32\n[scheduler]\nparsing_processes = 2\n"
PG_CONF = b"port = 5432\nmax_connections = 100\nwork_mem = '4MB'\n"
PROM_YML = b"global: {scrape_interval: 15s}\n"


def comp(name: str, kind: str, reads=(CFG,), reload_signal=None, command=("run",), queue=None) -> Component:
    return Component(name, kind, command, stage=0, reads=tuple(reads), reload_signal=reload_signal, queue=queue)


COMPS = [
    comp("postgres", "postgres", reads=(PG,), reload_signal="HUP"),
    comp("redis", "redis", reads=()),
    comp("api-server", "api-server"),
    comp("scheduler-1", "scheduler"),
    comp("scheduler-2", "scheduler"),
    comp("dag-processor", "dag-processor"),
    comp("triggerer", "triggerer"),
    comp("worker-forkserver", "worker-forkserver"),
    comp("worker-default-1", "worker", command=("worker", "--concurrency", "8"), queue="default"),
    comp("worker-default-2", "worker", command=("worker", "--concurrency", "8"), queue="default"),
    comp("prometheus", "prometheus", reads=(PROM,), reload_signal="HUP"),
    comp("reclaimer", "reclaimer", reads=(SPEC,)),
]
FILES = {CFG: (AIRFLOW_CFG, 100.0), PG: (PG_CONF, 100.0), PROM: (PROM_YML, 100.0), SPEC: (b"a", 100.0)}
ALL = {c.name for c in COMPS}


def prints(comps, files=FILES):
    return {c.name: fingerprint(c, {"command": " ".join(c.command), "stopwaitsecs": "30"}, files) for c in comps}


def edit(path: Path, data: bytes) -> dict:
    return {**FILES, path: (data, 200.0)}


def with_command(name: str, command: tuple[str, ...]) -> list[Component]:
    return [Component(c.name, c.kind, command, c.stage, reads=c.reads, queue=c.queue) if c.name == name else c
            for c in COMPS]


OLD = prints(COMPS)
AIRFLOW_ORDER = ["scheduler-1", "scheduler-2", "api-server", "dag-processor", "triggerer", "worker-forkserver",
                 "worker-default-1", "worker-default-2"]


@pytest.mark.parametrize("comps, files, running, expected", [
    pytest.param(COMPS, FILES, ALL, [], id="unchanged-nothing"),
    pytest.param(COMPS, edit(CFG, AIRFLOW_CFG.replace(b"= 2", b"= 4")), ALL,
                 [(n, RESTART) for n in AIRFLOW_ORDER], id="airflow-cfg-rolling-order"),
    pytest.param(COMPS, edit(CFG, AIRFLOW_CFG.replace(b"= 2", b"= 4")), ALL - {"worker-default-2"},
                 [(n, RESTART) for n in AIRFLOW_ORDER if n != "worker-default-2"], id="standby-worker-not-restarted"),
    pytest.param(with_command("worker-default-1", ("worker", "--concurrency", "64")), FILES, ALL,
                 [("worker-default-1", RESTART)], id="concurrency-restarts-only-that-worker"),
    pytest.param(COMPS, edit(PROM, b"global: {scrape_interval: 5s}\n"), ALL,
                 [("prometheus", RELOAD)], id="prometheus-reloads"),
    pytest.param(COMPS, edit(PG, PG_CONF.replace(b"4MB", b"8MB")), ALL,
                 [("postgres", RELOAD)], id="postgres-reloadable-setting"),
    pytest.param(COMPS, edit(PG, PG_CONF.replace(b"100", b"200")), ALL,
                 [("postgres", RESTART)], id="postgres-max-connections-restarts"),
    pytest.param(COMPS, {**edit(CFG, AIRFLOW_CFG + b"x = 1\n"), PG: (PG_CONF.replace(b"100", b"200"), 200.0),
                         PROM: (b"x: 1\n", 200.0)}, ALL,
                 [("prometheus", RELOAD)] + [(n, RESTART) for n in AIRFLOW_ORDER] + [("postgres", RESTART)],
                 id="reloads-first-database-last"),
    pytest.param(COMPS, edit(SPEC, b"b"), ALL, [("reclaimer", RESTART)], id="spec-daemon-restarts"),
    pytest.param(COMPS + [comp("worker-etl-1", "worker", queue="etl")], FILES, ALL,
                 [("worker-etl-1", START)], id="new-queue-starts"),
    pytest.param(COMPS, FILES, ALL | {"worker-old-1"}, [("worker-old-1", STOP)], id="removed-queue-stops"),
    pytest.param(COMPS, FILES, ALL - {"scheduler-2"}, [("scheduler-2", START)], id="stopped-wanted-starts"),
])
def test_plan(comps, files, running, expected):
    new = prints(comps, files)
    # worker-default-2 stands by when it is not running (above min_workers): `up` leaves it so.
    wanted = {c.name for c in comps} - ({"worker-default-2"} - set(running))
    changes = plan_changes(comps, OLD, new, running, wanted)
    assert [(c.component, c.action) for c in changes] == expected
    assert all(c.reason for c in changes)


def test_reason_names_the_setting_not_its_value():
    new = prints(COMPS, edit(CFG, AIRFLOW_CFG.replace(b"= 2", b"= 4")))
    (first, *_) = plan_changes(COMPS, OLD, new, ALL, ALL)
    assert first == Change("scheduler-1", RESTART, "airflow.cfg: scheduler.parsing_processes changed")
    assert "4" not in first.reason


def test_running_component_without_record_is_left_alone_unless_its_program_changed():
    new = prints(COMPS, edit(CFG, b"[core]\nx = 1\n"))
    old = {k: v for k, v in OLD.items() if k != "scheduler-1"}
    names = [c.component for c in plan_changes(COMPS, old, new, ALL, ALL)]
    assert "scheduler-1" not in names and "scheduler-2" in names
    changes = plan_changes(COMPS, old, new, ALL, ALL, changed_programs={"scheduler-1"})
    assert changes[0].component == "scheduler-1" and "no record" in changes[0].reason


@pytest.mark.parametrize("started_at, pending", [
    pytest.param(150.0, True, id="started-before-the-edit"),
    pytest.param(250.0, False, id="restarted-after-the-edit-by-the-listener"),
    pytest.param(None, True, id="start-unknown"),
])
def test_as_running_credits_a_start_after_the_file_changed(started_at, pending):
    new = prints(COMPS, edit(CFG, AIRFLOW_CFG + b"y = 2\n"))
    running = as_running(OLD["scheduler-1"], new["scheduler-1"], started_at)
    assert bool(changed_inputs(running, new["scheduler-1"])) is pending


def test_as_running_keeps_the_program_as_recorded():
    comps = with_command("scheduler-1", ("other",))
    new = prints(comps)
    assert changed_inputs(as_running(OLD["scheduler-1"], new["scheduler-1"], 10_000.0), new["scheduler-1"]) == ["command"]


def test_parse_keys_sections_and_comments():
    keys = parse_keys("# c\n[core]\na = 1\n; x\n[celery]\na=2\nbare line\n")
    assert set(keys) == {"core.a", "celery.a"} and keys["core.a"] != keys["celery.a"]


def test_missing_file_is_an_input():
    new = prints(COMPS, {**FILES, PROM: (None, None)})
    assert changed_inputs(OLD["prometheus"], new["prometheus"]) == ["prometheus.yml (gone)"]


@pytest.mark.parametrize("desired, managed, current, in_use, expected", [
    pytest.param({"default_pool": 128}, [], {"default_pool": 128}, {}, [], id="unchanged"),
    pytest.param({"default_pool": 256}, [], {"default_pool": 128}, {}, [("default_pool", "resize", 256)],
                 id="default-pool-from-plan"),
    pytest.param({"etl": 4}, [], {"default_pool": 128}, {}, [("etl", "create", 4)], id="new-pool"),
    pytest.param({"etl": 8}, ["etl"], {"default_pool": 128, "etl": 4}, {}, [("etl", "resize", 8)], id="resized"),
    pytest.param({}, ["etl"], {"default_pool": 128, "etl": 4}, {}, [("etl", "delete", None)], id="removed-unused"),
    pytest.param({}, ["etl"], {"default_pool": 128, "etl": 4}, {"etl": 3}, [("etl", "keep", None)],
                 id="removed-but-in-use"),
    pytest.param({}, [], {"default_pool": 128, "ui_made": 4}, {}, [], id="pool-made-in-the-ui-untouched"),
    pytest.param({}, ["default_pool"], {"default_pool": 128}, {}, [], id="default-pool-never-deleted"),
])
def test_plan_pools(desired, managed, current, in_use, expected):
    changes = plan_pools(desired, managed, current, in_use)
    assert [(c.pool, c.action, c.slots) for c in changes] == expected
    assert all(isinstance(c, PoolChange) and c.describe() for c in changes)


@pytest.mark.parametrize("spec_pools, planned, expected", [
    pytest.param({}, None, {}, id="no-plan-no-pools"),
    pytest.param({}, 256, {"default_pool": 256}, id="plan-sizes-default-pool"),
    pytest.param({"default_pool": 64, "etl": 2}, 256, {"default_pool": 64, "etl": 2}, id="spec-wins"),
])
def test_desired_pools(spec_pools, planned, expected):
    assert desired_pools(spec_pools, planned) == expected
