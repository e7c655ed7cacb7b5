"""The pure decisions of `airscale upgrade` (airscale.backup.upgrade): which steps for which
versions, what stops for the migration and in what order, the installed Airflow's head."""

from __future__ import annotations

from pathlib import Path

import pytest

from airscale.backup.restore import parse_migration
from airscale.backup.take import archive_pattern
from airscale.backup.upgrade import (
    BACKUP,
    CHECK,
    MIGRATE,
    NOTHING,
    REFUSE,
    RESTART,
    SMOKE,
    STOP,
    UPGRADE,
    Facts,
    backup_name,
    migration_heads,
    plan_upgrade,
    stop_order,
)
from airscale.runtime.component import Component

ALL = [CHECK, BACKUP, STOP, MIGRATE, RESTART, SMOKE]


def facts(running="3.3.2", installed="3.3.2", running_as="0.1.0", installed_as="0.1.0", rev="head",
          head="head", known=True) -> Facts:
    return Facts(running, installed, running_as, installed_as, rev, head, known)


@pytest.mark.parametrize("f, force, action, steps, says", [
    pytest.param(facts(), False, NOTHING, [], "nothing to upgrade", id="same-everything"),
    pytest.param(facts(), True, UPGRADE, ALL, "rehearsal", id="same-forced-rehearsal"),
    pytest.param(facts(running="3.2.2", rev="old"), False, UPGRADE, ALL, "Airflow 3.2.2 -> 3.3.2",
                 id="minor-upgrade-with-migration"),
    pytest.param(facts(running="3.3.1"), False, UPGRADE, ALL, "Airflow 3.3.1 -> 3.3.2",
                 id="patch-upgrade-same-schema-still-stops"),
    pytest.param(facts(rev="old"), False, UPGRADE, ALL, "behind the installed", id="schema-behind-same-version"),
    pytest.param(facts(running=None, running_as=None), False, UPGRADE, ALL, "unknown (not recorded)",
                 id="running-version-not-recorded"),
    pytest.param(facts(running_as="0.0.9"), False, UPGRADE, [CHECK, BACKUP, RESTART, SMOKE],
                 "no migration", id="airscale-only-rolls"),
    pytest.param(facts(running_as="0.0.9"), True, UPGRADE, ALL, "airscale 0.0.9 -> 0.1.0", id="airscale-only-forced"),
    pytest.param(facts(running="3.3.2", installed="3.2.2"), False, REFUSE, [], "cannot migrate a database down",
                 id="downgrade-refused"),
    pytest.param(facts(rev="future", known=False), False, REFUSE, [], "does not know", id="newer-database-refused"),
    pytest.param(facts(running="3.3.2", installed="3.2.2"), True, REFUSE, [], "older", id="force-does-not-downgrade"),
])
def test_plan_upgrade(f, force, action, steps, says):
    plan = plan_upgrade(f, force=force)
    assert plan.action == action, plan
    assert [s.name for s in plan.steps] == steps
    assert says in plan.reason, plan.reason
    assert plan.migrates == (MIGRATE in steps)
    if STOP in steps:  # the migration never runs under running Airflow components
        assert steps.index(STOP) < steps.index(MIGRATE) < steps.index(RESTART) < steps.index(SMOKE)
    if steps:
        assert steps[:2] == [CHECK, BACKUP], "a backup before anything changes"


def comp(name: str, kind: str) -> Component:
    return Component(name, kind, ("x",), stage=0)


CLUSTER = [comp("postgres", "postgres"), comp("pgbouncer", "pgbouncer"), comp("redis", "redis"),
           comp("api-server", "api-server"), comp("scheduler-1", "scheduler"), comp("scheduler-2", "scheduler"),
           comp("dag-processor", "dag-processor"), comp("triggerer", "triggerer"),
           comp("worker-forkserver", "worker-forkserver"), comp("worker-default-1", "worker"),
           comp("worker-default-2", "worker"), comp("worker-default-3", "worker"), comp("prometheus", "prometheus"),
           comp("exporter", "exporter"), comp("autoscaler", "autoscaler"), comp("liveness", "liveness"),
           comp("backup", "backup"), comp("patroni-1", "patroni"), comp("etcd-1", "etcd"), comp("reclaimer", "reclaimer")]


@pytest.mark.parametrize("running, groups", [
    pytest.param({c.name for c in CLUSTER} - {"worker-default-3"}, [
        ["exporter", "autoscaler", "liveness", "backup"], ["scheduler-1", "scheduler-2"],
        ["dag-processor", "triggerer"], ["worker-default-1", "worker-default-2"], ["worker-forkserver"],
        ["api-server"]], id="scale-profile-standby-worker-not-running"),
    pytest.param({"postgres", "api-server", "scheduler-1", "dag-processor", "triggerer"}, [
        ["scheduler-1"], ["dag-processor", "triggerer"], ["api-server"]], id="dev-profile"),
    pytest.param(set(), [], id="nothing-running"),
])
def test_stop_order(running, groups):
    got = stop_order(CLUSTER, running)
    assert got == groups
    stopped = {n for g in got for n in g}
    # The data stores, their proxies and monitoring keep running through the migration.
    assert not stopped & {"postgres", "pgbouncer", "redis", "prometheus", "patroni-1", "etcd-1", "reclaimer"}


@pytest.mark.parametrize("graph, heads", [
    pytest.param({"a": (), "b": ("a",), "c": ("b",)}, ["c"], id="linear"),
    pytest.param({"a": (), "b": ("a",), "c": ("a",)}, ["b", "c"], id="branched"),
    pytest.param({"a": (), "b": ("a",), "c": ("a",), "d": ("b", "c")}, ["d"], id="merged"),
    pytest.param({}, [], id="none"),
])
def test_migration_heads(graph, heads):
    assert migration_heads(graph) == heads


@pytest.mark.parametrize("text, parsed", [
    pytest.param('revision = "d2f4e1b3c5a7"\ndown_revision = "9ff64e1c35d3"\n', ("d2f4e1b3c5a7", ("9ff64e1c35d3",)),
                 id="plain"),
    pytest.param("revision: str = 'abc123'\ndown_revision: str | None = None\n", ("abc123", ()), id="typed-first"),
    pytest.param('revision = "ff"\ndown_revision = ("aa", "bb")\n', ("ff", ("aa", "bb")), id="merge"),
    pytest.param("no migration here", None, id="not-a-migration"),
])
def test_parse_migration(text, parsed):
    assert parse_migration(text) == parsed


def test_installed_airflow_has_one_head():
    from airscale.backup.restore import installed_migrations

    graph = installed_migrations()
    assert len(graph) > 100 and len(migration_heads(graph)) == 1


def test_pre_upgrade_backups_are_outside_the_scheduled_retention():
    from datetime import UTC, datetime

    name = backup_name("analytics", datetime(2026, 12, 6, 18, 0, tzinfo=UTC))
    assert name == "airscale-analytics-pre-upgrade-20261206T180000Z.tar"
    assert not archive_pattern("analytics").match(name)
    assert Path(name).suffix == ".tar"
