"""The integration tests' clusters: one per kind, shared by every module that needs that kind.

A cluster costs a minute or more to bring up and to purge on a 2-core machine, so the modules
share them. Each kind is a session-scoped fixture brought up by the real CLI on first use:

  default_cluster    (ports 29100-29199) profile scale: CeleryExecutor, 2 schedulers, 2 workers
                     (a third on standby), monitoring on with short scrape/alert times; users
                     vera (Viewer), otto (Op), ursula (User), fiona (the spec's role
                     it_auth_trigger); DAGs of dags/, dags_observe/,
                     dags_auth/ and the drill workload.
                     test_cluster, test_auth, test_drills, test_observe
  dev_cluster        (29200) profile dev: LocalExecutor, no broker, no workers; tuning on with a
                     scheduled `db clean` every 36 s, a scheduled backup every 18 s (keep 1);
                     DAGs of dags/ and dags_dbcare/.
                     test_dev_profile, test_dbcare, test_backup (which restores it into a
                     cluster of its own at 29400, and fails a restore on purpose at 29500)
  autoscale_cluster  (29300) autoscaling on, 1 scheduler, 1 to 3 workers of 4 slots; the
                     autoscaler owns the workers and the tests count its every start and stop,
                     so no other module shares it. DAGs of dags_autoscale/.
                     test_autoscale
  ha_cluster         (29600) the `ha` profile: ha.database (three etcd members, two Patroni
                     nodes, HAProxy, PgBouncer) and ha.broker (Redis primary + replica, three
                     Sentinels); 1 worker.  test_ha_database, test_ha_dcs, test_ha_broker

(test_worker_join and test_bench_quick bring up clusters of their own: in network namespaces,
and through `airscale bench`; test_ldap one at 29700 with a slapd of its own at 30000, below the
next checkout's blocks, since LDAP needs its own api-server settings.)

Rules for the modules: a test uses its own DAG ids or only the runs it triggered, reads only
the log lines written since it started, and leaves the cluster as healthy as it found it (a
test that stops or kills components waits for them to recover). Before every test the
`healthy_*` fixtures check that what ran at `up` is running and healthy again, so a test that
breaks the cluster is named by the next one's error instead of hiding behind it.

A kind is brought down (`down --purge`) after the last test of the session that needs it, and
the modules are ordered so that the tests of one kind run together: one cluster at a time
loads the machine.

Every `Cluster` object is built by `cluster_of`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from airscale.drills import workload
from airscale.assembly import open_cluster
from airscale.runtime.cluster import Cluster
from airscale.spec import Spec, load_spec
from tests.conftest import REPO, airscale, reachable_tmpdir, write_spec

HERE = REPO / "tests" / "integration"

# AIRSCALE_TEST_PORT_OFFSET moves every block, so that two checkouts can run their integration
# tests side by side on one machine (for example 2000: 31100, 31200, ...).
PORT_OFFSET = int(os.environ.get("AIRSCALE_TEST_PORT_OFFSET", "0"))
DEFAULT_PORT = 29100 + PORT_OFFSET
DEV_PORT = 29200 + PORT_OFFSET
AUTOSCALE_PORT = 29300 + PORT_OFFSET
RESTORED_PORT = 29400 + PORT_OFFSET  # test_backup: the dev cluster restored beside the original
FAILED_RESTORE_PORT = 29500 + PORT_OFFSET  # test_backup: the PostgreSQL of a restore that fails
HA_PORT = 29600 + PORT_OFFSET  # test_worker_join uses this block only inside its own network namespace


def cluster_of(spec: Spec | Path | str) -> Cluster:
    """The one place the tests build a `Cluster` (from a spec or a spec file)."""
    if not isinstance(spec, Spec):
        spec = load_spec(Path(spec))
    return open_cluster(spec)


def copy_dags(dest: Path, *sources: Path) -> None:
    """Copy the DAG files of `sources` into `dest`, refusing two files of one name."""
    dest.mkdir(parents=True, exist_ok=True)
    for src in sources:
        for f in sorted(src.glob("*.py")):
            assert not (dest / f.name).exists(), f"two DAG files named {f.name} for one cluster"
            shutil.copy(f, dest / f.name)


def log_mark(cluster: Cluster, component: str) -> int:
    """Where a component's log ends now: give it to `log_since` for the lines written after."""
    path = cluster.layout.log_of(component)
    return path.stat().st_size if path.exists() else 0


def log_since(cluster: Cluster, component: str, mark: int) -> str:
    path = cluster.layout.log_of(component)
    if not path.exists():
        return ""
    with path.open("rb") as f:
        if path.stat().st_size < mark:  # rotated: all of the new file is new
            mark = 0
        f.seek(mark)
        return f.read().decode(errors="replace")


@dataclass
class SharedCluster:
    """A cluster brought up for the session by the real CLI."""

    kind: str
    root: Path
    spec_path: Path
    cluster: Cluster = field(init=False)
    # Components running once `up` returned: each test must find them running and healthy.
    baseline: set[str] = field(default_factory=set)
    stopped: bool = False

    def __post_init__(self) -> None:
        self.cluster = cluster_of(self.spec_path)

    def up(self) -> None:
        proc = airscale("up", "-s", str(self.spec_path), timeout=600)
        assert proc.returncode == 0, f"up of the {self.kind} cluster failed:\n{proc.stdout}\n{proc.stderr}"
        assert "admin password (shown once" in proc.stdout
        autoscaled = self.cluster.spec.autoscaling.enabled
        self.baseline = {r["component"] for r in self.cluster.status()
                         if r["state"] == "RUNNING" and not (autoscaled and r["component"].startswith("worker-"))}

    def unhealthy(self) -> dict[str, dict]:
        rows = {r["component"]: r for r in self.cluster.status()}
        # healthy is None for a component without a health check of its own (e.g. the reclaimer)
        return {n: rows.get(n) for n in self.baseline
                if not rows.get(n) or rows[n]["state"] != "RUNNING" or rows[n]["healthy"] is False}

    def wait_healthy(self, timeout: float = 180) -> None:
        """Wait until every component that ran at `up` is running and healthy again."""
        deadline = time.monotonic() + timeout
        while bad := self.unhealthy():
            assert time.monotonic() < deadline, f"the {self.kind} cluster is not healthy: {bad}"
            time.sleep(2)

    def down(self, failures: bool = False) -> None:
        if self.stopped:
            return
        self.stopped = True
        _STARTED.pop(self.kind, None)
        log = self.cluster.layout.log_of("autoscaler")
        if failures and log.exists():  # the evidence goes with the cluster's data
            print("autoscaler log (last lines):\n" + "\n".join(log.read_text().splitlines()[-25:]))
        proc = airscale("down", "--purge", "-s", str(self.spec_path), timeout=400)
        if proc.returncode == 0:  # keep the evidence when the cluster could not be stopped
            subprocess.run(["rm", "-rf", str(self.root)], check=False)
        else:
            print(f"down of the {self.kind} cluster exited {proc.returncode}: {proc.stdout[-500:]} "
                  f"{proc.stderr[-1500:]}")


# Kinds brought up in this session and not yet down, by kind.
_STARTED: dict[str, SharedCluster] = {}
# The session fixture of each kind; also the order in which the kinds' modules run.
FIXTURES = {"dev": "dev_cluster", "autoscale": "autoscale_cluster", "ha": "ha_cluster",
            "default": "default_cluster"}


def _shared(request, kind: str, spec: dict, dags: list[Path], drill_workload: bool = False):
    root = reachable_tmpdir(f"airscale-it-{kind}-")
    copy_dags(root / "dags", *dags)
    if drill_workload:  # in the folder from the start: no drill waits for the DAG processor
        workload.install(root / "dags")
    spec["cluster"]["data_dir"] = str(root / "data")
    spec["dags_folder"] = str(root / "dags")
    shared = SharedCluster(kind, root, write_spec(root, spec))
    _STARTED[kind] = shared
    try:
        shared.up()
        yield shared
    finally:
        shared.down(failures=bool(request.session.testsfailed))


@pytest.fixture(scope="session")
def default_cluster(request):
    yield from _shared(request, "default", {
        "cluster": {"name": "it", "base_port": DEFAULT_PORT},
        "schedulers": {"count": 2},
        "queues": {"default": {"min_workers": 2, "max_workers": 3, "concurrency": 8}},
        "workers": {"drain_timeout": 60},
        # Its tests start and stop the standby worker 3 themselves: no autoscaler may compete.
        "autoscaling": {"enabled": False},
        # Short scrape, evaluation, `for:` and grouping times: an alert's path (Airflow ->
        # exporter -> Prometheus rule -> Alertmanager -> bundled receiver -> alerts.jsonl)
        # takes seconds.
        "monitoring": {
            "scrape_interval_seconds": 2, "evaluation_interval_seconds": 2, "alert_for_seconds": 2,
            "group_wait_seconds": 1, "group_interval_seconds": 5,
            "thresholds": {"scheduler_heartbeat_stale_seconds": 10},
            "task_policy": {"execution_timeout_seconds": 300, "max_retry_delay_seconds": 120},
        },
        # People with roles besides admin (test_auth), fiona with a role of the spec's own that
        # reads every DAG and triggers only it_auth.
        "auth": {
            "roles": {"it_auth_trigger": {"permissions": [
                {"action": "can_read", "resource": "DAGs"}, {"action": "can_read", "resource": "DAG Runs"},
                {"action": "can_create", "resource": "DAG Runs"}, {"action": "can_edit", "resource": "DAG:it_auth"}]}},
            "users": {"vera": {"role": "Viewer"}, "otto": {"role": "Op", "name": "Otto Operator"},
                      "ursula": {"role": "User"}, "fiona": {"role": "it_auth_trigger"}},
        },
    }, [HERE / "dags", HERE / "dags_observe", HERE / "dags_auth"], drill_workload=True)


# test_dbcare's workload profile: its plan gives PostgreSQL 512MB of shared_buffers.
DBCARE_PROFILE = {"tasks_per_day": 20_000, "peak_concurrent_tasks": 8, "typical_task_seconds": 1,
                  "database_machine": {"cores": 2, "memory_gib": 2}}


@pytest.fixture(scope="session")
def dev_cluster(request):
    yield from _shared(request, "dev", {
        "cluster": {"name": "dev", "base_port": DEV_PORT, "profile": "dev"},
        "schedulers": {"count": 1},
        # 0.01 h = 36 s: the first scheduled clean comes 36 s after up; 30 days keep every run
        # the tests make, until test_dbcare cleans with a retention of 0.
        "tuning": {"enabled": True, "workload": DBCARE_PROFILE, "db_retention_days": 30,
                   "db_clean_every_hours": 0.01},
        # 0.005 h = 18 s: the first scheduled backup comes 18 s after up, the second 18 s later
        # deletes the first (keep 1): the retention shows before test_backup's turn comes.
        "backup": {"every_hours": 0.005, "keep": 1},
    }, [HERE / "dags", HERE / "dags_dbcare"])


@pytest.fixture(scope="session")
def autoscale_cluster(request):
    yield from _shared(request, "autoscale", {
        "cluster": {"name": "itas", "base_port": AUTOSCALE_PORT},
        "schedulers": {"count": 1},
        "queues": {"default": {"min_workers": 1, "max_workers": 3, "concurrency": 4}},
        "workers": {"drain_timeout": 180},
        "autoscaling": {"enabled": True, "interval": 2, "stabilization_window": 20, "scale_up_max_step": 2},
    }, [HERE / "dags_autoscale"])


def _ha_kind(request, kind: str, name: str, port: int, ha: dict):
    """An `ha` kind: 2 schedulers, one worker, monitoring off, the drill workload; `ha` on."""
    yield from _shared(request, kind, {
        "cluster": {"name": name, "base_port": port},
        "schedulers": {"count": 2},
        "queues": {"default": {"min_workers": 1, "max_workers": 1, "concurrency": 8}},
        "workers": {"drain_timeout": 30},
        "monitoring": {"enabled": False},
        "ha": ha,
    }, [], drill_workload=True)


@pytest.fixture(scope="session")
def ha_cluster(request):
    # The whole `ha` profile in one cluster, as users run it: PostgreSQL under Patroni with
    # three etcd members, and Redis with a replica and three Sentinels.
    yield from _ha_kind(request, "ha", "ha", HA_PORT, {"database": {"enabled": True}, "broker": {"enabled": True}})


def _healthy(shared: SharedCluster) -> SharedCluster:
    shared.wait_healthy()
    return shared


# What a test requests: the kind's cluster, found healthy (what ran at `up` runs again).
@pytest.fixture
def healthy_default(default_cluster) -> SharedCluster:
    return _healthy(default_cluster)


@pytest.fixture
def healthy_dev(dev_cluster) -> SharedCluster:
    return _healthy(dev_cluster)


@pytest.fixture
def healthy_ha(ha_cluster) -> SharedCluster:
    return _healthy(ha_cluster)




def _kind_of(item) -> str | None:
    names = getattr(item, "fixturenames", ())
    return next((k for k, f in FIXTURES.items() if f in names), None)


# With pytest-xdist (`make test`: `-n 2 --dist loadgroup`), the longest kinds first, so that
# the two workers end together: each takes a kind, then the next, and the modules without a
# shared cluster (unit tests among them) fill in at the end.
DISTRIBUTED_ORDER = ("default", "ha", "autoscale", "dev")


def _distributed(config) -> bool:
    # What xdist itself reads on its workers (where `dist` is "no"): set by `--dist loadgroup`.
    return bool(getattr(config.option, "loadgroup", False))


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(session, config, items):
    """Run the modules of one kind of cluster together (in the order given within a kind):
    a kind's cluster is down before the next kind's comes up. Modules without a shared cluster
    keep their places ahead of them.

    Distributed over xdist workers, each kind is one group (its tests on one worker, so its
    cluster comes up once) and every other module a group of its own (its module-scoped
    fixtures, some of them clusters on fixed ports, come up once too)."""
    distributed = _distributed(config)
    order = DISTRIBUTED_ORDER if distributed else tuple(FIXTURES)
    rank = {k: i + 1 for i, k in enumerate(order)}
    module_rank: dict[object, int] = {}
    for item in items:
        kind = _kind_of(item)
        if kind:
            module_rank[item.module] = min(module_rank.get(item.module, 99), rank[kind])
        if distributed:
            item.add_marker(pytest.mark.xdist_group(kind or item.nodeid.split("::")[0]))
    rest = len(order) + 1 if distributed else 0
    items.sort(key=lambda it: module_rank.get(getattr(it, "module", None), rest))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """Bring a kind's cluster down after the last test that needs it, not at the session's end."""
    yield
    if not _STARTED:
        return
    items = item.session.items
    later = items[items.index(item) + 1:] if nextitem is not None else []
    for kind in list(_STARTED):
        if not any(FIXTURES[kind] in getattr(it, "fixturenames", ()) for it in later):
            _STARTED[kind].down(failures=bool(item.session.testsfailed))


def assert_no_secret_exposed(cluster: Cluster, secret_values: list[str]) -> None:
    """No secret on a command line or in the environment of the cluster's processes, nor in a log."""
    from airscale.runtime.procs import cluster_pids

    for pid in cluster_pids(cluster.cluster_id()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read().decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError):
            continue
        assert not any(pw in cmdline or pw in environ for pw in secret_values), pid
    for log in cluster.layout.logs.glob("*.log"):
        text = log.read_text(errors="replace")
        assert not any(pw in text for pw in secret_values), log
