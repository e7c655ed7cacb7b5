"""airscale's accelerators (airscale.runtime.airflow_entry): scheduler pacing and the worker DAG
file cache. Pure decisions as tables; the hooks against fakes of the Airflow objects they wrap
(the bench's integration test runs them in real clusters)."""

from __future__ import annotations

import json
import os
import sys
import types
from types import SimpleNamespace

import pytest

from airscale.runtime import scheduler_pacing, worker_dag_cache
from airscale.runtime.scheduler_pacing import Pacing
from airscale.runtime.worker_dag_cache import DagFileCache, Entry, FileId, workload_target


# --- pacing --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "steps, expected",
    [
        # (seconds, queued this loop, running task keys) -> sleep after the loop
        pytest.param([(0, 0, set())], [0.2], id="quiet-from-the-start"),
        pytest.param([(0, 1, {"a"}), (0.5, 0, {"a"}), (1.0, 0, set()), (1.1, 1, {"b"})],
                     [0.02, 0.02, 0.02, 0.02], id="chain-stays-hot"),
        pytest.param([(0, 1, {"a"}), (2.9, 0, {"a"}), (3.1, 0, {"a"})], [0.02, 0.02, 0.2],
                     id="long-task-cools-after-hot-seconds"),
        pytest.param([(0, 1, {"a"}), (3.5, 0, {"a"}), (60, 0, set())], [0.02, 0.2, 0.02],
                     id="a-task-ending-is-activity"),
        pytest.param([(0, 5, {1, 2, 3, 4, 5}), (0.1, 0, {1, 2, 3, 4, 5})], [0.2, 0.2],
                     id="many-running-stays-at-idle-sleep"),
        pytest.param([(0, 0, {1, 2, 3, 4, 5}), (0.1, 0, {1, 2, 3, 4})], [0.2, 0.02],
                     id="hot-again-when-few-run"),
        pytest.param([(0, 1, set()), (10, 0, set()), (20, 0, set())], [0.02, 0.2, 0.2], id="cools-down"),
    ],
)
def test_pacing(steps, expected):
    p = Pacing(idle_sleep=0.2, busy_sleep=0.02, hot_seconds=3.0, max_running=4)
    assert [p.next_sleep(t, q, r) for t, q, r in steps] == expected


def test_pacing_hook_sets_the_runners_idle_sleep(monkeypatch):
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    queued = iter([1, 0, 0])
    monkeypatch.setattr(SchedulerJobRunner, "_do_scheduling", lambda self, session: next(queued))
    scheduler_pacing.install(busy_sleep=0.01, hot_seconds=3.0, max_running=4)
    runner = SimpleNamespace(_scheduler_idle_sleep_time=0.5, executors=[SimpleNamespace(running={"ti"})])
    assert SchedulerJobRunner._do_scheduling(runner, None) == 1
    assert runner._scheduler_idle_sleep_time == 0.01
    assert runner._airscale_pacing.idle_sleep == 0.5
    runner.executors = [SimpleNamespace(running=set(range(10)))]
    SchedulerJobRunner._do_scheduling(runner, None)
    assert runner._scheduler_idle_sleep_time == 0.5  # many running: back to the configured sleep
    # A broken executor never stops the scheduler: its loop goes on with the last sleep.
    runner.executors = [None]
    assert SchedulerJobRunner._do_scheduling(runner, None) == 0


def test_entry_installs_only_what_the_configuration_turns_on(monkeypatch):
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    from airscale.runtime.airflow_entry import install_accelerators

    monkeypatch.setattr(SchedulerJobRunner, "_do_scheduling", SchedulerJobRunner._do_scheduling)
    monkeypatch.delenv("AIRFLOW__AIRSCALE__SCHEDULER_BUSY_SLEEP", raising=False)
    assert install_accelerators(["scheduler"]) == []
    monkeypatch.setenv("AIRFLOW__AIRSCALE__SCHEDULER_BUSY_SLEEP", "0.02")
    assert install_accelerators(["scheduler"]) == ["scheduler-pacing"]
    assert hasattr(SchedulerJobRunner._do_scheduling, "_airscale_original")
    from airflow.api_fastapi import app as api_app

    monkeypatch.setattr(api_app, "create_task_execution_api_app", api_app.create_task_execution_api_app)
    assert install_accelerators(["api-server"]) == ["api-warmup"]
    assert hasattr(api_app.create_task_execution_api_app, "_airscale_original")
    monkeypatch.setenv("AIRFLOW__AIRSCALE__API_SERVER_WARMUP", "False")
    assert install_accelerators(["api-server"]) == []
    # Event wake-up replaces pacing when both are configured.
    from airflow.jobs import scheduler_job_runner

    monkeypatch.setattr(scheduler_job_runner, "time", scheduler_job_runner.time)
    monkeypatch.setattr(SchedulerJobRunner, "__init__", SchedulerJobRunner.__init__)
    monkeypatch.setenv("AIRFLOW__AIRSCALE__SCHEDULER_EVENT_WAKEUP", "True")
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "sqlite:////tmp/none.db")
    assert install_accelerators(["scheduler"]) == ["scheduler-pacing"]  # LISTEN needs PostgreSQL
    monkeypatch.setenv("AIRFLOW__AIRSCALE__SCHEDULER_LISTEN_URL", "postgresql+psycopg2://u:p@127.0.0.1:1/a")
    assert install_accelerators(["scheduler"]) == ["scheduler-event-wakeup"]
    monkeypatch.setenv("AIRFLOW__AIRSCALE__WORKER_DAG_CACHE_SECONDS", "0")
    assert install_accelerators(["celery", "worker"]) == []


# --- worker DAG file cache ---------------------------------------------------------------------
def workload(rel="dags/a.py", version=None, **extra) -> str:
    return json.dumps({"type": "ExecuteTask", "ti": {"dag_id": "a"}, "dag_rel_path": rel,
                       "bundle_info": {"name": "dags-folder", "version": version}, **extra})


@pytest.mark.parametrize(
    "payload, expected",
    [
        pytest.param(workload(), ("dags-folder", "dags/a.py", None), id="task"),
        pytest.param(workload(version="abc"), ("dags-folder", "dags/a.py", "abc"), id="versioned"),
        pytest.param(json.dumps({"type": "ExecuteCallback", "callback": {}}), None, id="callback"),
        pytest.param("not json", None, id="garbage"),
        pytest.param(json.dumps([1, 2]), None, id="not-an-object"),
        pytest.param(json.dumps({"ti": {}, "dag_rel_path": "a.py"}), None, id="no-bundle"),
    ],
)
def test_workload_target(payload, expected):
    assert workload_target(payload) == expected


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def put(cache, path, key=("b", "a.py")):
    cache.put(key, Entry(str(path), FileId.of(str(path)), cache.clock(), object()))


def test_cache_entry_lives_while_the_file_is_unchanged_and_young(tmp_path):
    f = tmp_path / "a.py"
    f.write_text("x = 1\n")
    clock = Clock()
    cache = DagFileCache(max_age=60, clock=clock)
    put(cache, f)
    assert cache.fresh(("b", "a.py")) is not None
    assert cache.fresh(("b", "a.py"), str(tmp_path / "other.py")) is None  # another bundle path
    put(cache, f)
    clock.now = 61
    assert cache.fresh(("b", "a.py")) is None  # too old
    put(cache, f)
    f.write_text("x = 22\n")
    os.utime(f, ns=(1, 1))
    assert cache.fresh(("b", "a.py")) is None  # edited
    assert ("b", "a.py") not in cache.entries


def test_cache_keeps_the_most_recently_used(tmp_path):
    cache = DagFileCache(max_entries=2)
    for name in ("1", "2", "3"):
        (tmp_path / name).write_text(name)
    put(cache, tmp_path / "1", ("b", "1"))
    put(cache, tmp_path / "2", ("b", "2"))
    cache.fresh(("b", "1"))
    put(cache, tmp_path / "3", ("b", "3"))
    assert list(cache.entries) == [("b", "1"), ("b", "3")]


@pytest.fixture
def fake_airflow(monkeypatch, tmp_path):
    """A fake BundleDagBag (what parse builds) and bundle, and a fresh cache."""
    built = []

    class FakeBag:
        def __init__(self, dag_folder=None, **kwargs):
            built.append(dag_folder)
            text = open(dag_folder).read()
            self.import_errors = {dag_folder: "boom"} if "raise" in text else {}
            self.dags = {} if self.import_errors else {"a": f"DAG from {text.strip()}"}

    mod = types.ModuleType("airflow.dag_processing.dagbag")
    mod.BundleDagBag = FakeBag
    monkeypatch.setitem(sys.modules, "airflow.dag_processing.dagbag", mod)
    monkeypatch.setattr(worker_dag_cache, "CACHE", DagFileCache())
    monkeypatch.setattr(worker_dag_cache, "_bundle",
                        lambda name, version: SimpleNamespace(path=str(tmp_path), supports_versioning=False))
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "a.py").write_text("v1")
    return SimpleNamespace(built=built, module=mod, root=tmp_path)


def airflow_parse(what, log):
    """Stands for task_runner.parse: builds a BundleDagBag of the file and takes the DAG."""
    from airflow.dag_processing.dagbag import BundleDagBag

    bag = BundleDagBag(dag_folder=os.path.join(what.root, what.dag_rel_path), safe_mode=False)
    return bag.dags[what.ti.dag_id]


def startup(root, rel="dags/a.py", version=None, dag_id="a"):
    return SimpleNamespace(root=str(root), dag_rel_path=rel, ti=SimpleNamespace(dag_id=dag_id),
                           bundle_info=SimpleNamespace(name="dags-folder", version=version))


def test_pool_process_parses_once_and_task_processes_reuse_it(fake_airflow):
    parse = worker_dag_cache.cached_parse(airflow_parse)
    for _ in range(3):
        worker_dag_cache.warm(workload())
        assert parse(startup(fake_airflow.root), None) == "DAG from v1"
    assert len(fake_airflow.built) == 1  # one parse in the pool process, none in the tasks
    assert fake_airflow.module.BundleDagBag.__name__ == "FakeBag"  # put back after each task


def test_edited_file_is_parsed_again(fake_airflow):
    parse = worker_dag_cache.cached_parse(airflow_parse)
    worker_dag_cache.warm(workload())
    f = fake_airflow.root / "dags" / "a.py"
    f.write_text("v22")
    os.utime(f, ns=(1, 1))
    assert parse(startup(fake_airflow.root), None) == "DAG from v22"  # the task parses it itself
    worker_dag_cache.warm(workload())
    assert parse(startup(fake_airflow.root), None) == "DAG from v22"
    assert len(fake_airflow.built) == 3


@pytest.mark.parametrize(
    "content, payload, what",
    [
        pytest.param("raise", workload(), {}, id="import-error-not-cached"),
        pytest.param("v1", workload(version="abc"), {"version": "abc"}, id="versioned-bundle-not-cached"),
        pytest.param("v1", json.dumps({"type": "ExecuteCallback"}), {}, id="callback-not-cached"),
        pytest.param("v1", workload(), {"dag_id": "other"}, id="unknown-dag-parsed-by-the-task"),
    ],
)
def test_what_the_cache_leaves_to_the_task_process(fake_airflow, content, payload, what):
    (fake_airflow.root / "dags" / "a.py").write_text(content)
    worker_dag_cache.warm(payload)
    seen = len(fake_airflow.built)
    parse = worker_dag_cache.cached_parse(lambda w, log: fake_airflow.module.BundleDagBag(
        dag_folder=os.path.join(w.root, w.dag_rel_path)))
    parse(startup(fake_airflow.root, **what), None)
    assert len(fake_airflow.built) == seen + 1  # the task process parsed the file itself


def test_a_failing_parse_in_the_pool_process_never_fails_the_task(fake_airflow, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("bundle gone")

    monkeypatch.setattr(worker_dag_cache, "_bundle", lambda name, version: broken())
    worker_dag_cache.warm(workload())  # logged, not raised
    assert worker_dag_cache.CACHE.entries == {}


def test_supervised_worker_gets_its_node_name_from_the_environment(monkeypatch):
    from celery import Celery

    from airscale.runtime.airflow_entry import install_accelerators

    seen = []
    monkeypatch.setattr(Celery, "worker_main", lambda self, argv=None: seen.append(argv))
    monkeypatch.setenv("AIRSCALE_CELERY_HOSTNAME", "worker-default-2@%h")
    monkeypatch.setenv("AIRFLOW__AIRSCALE__WORKER_DAG_CACHE_SECONDS", "0")
    assert install_accelerators(["celery", "worker", "--queues", "default"]) == ["node-name"]
    Celery().worker_main(["worker", "--queues", "default"])
    assert seen == [["worker", "--queues", "default", "--hostname", "worker-default-2@%h"]]
    # An explicit name on the command line (a joined worker) keeps Airflow's own handling.
    assert install_accelerators(["celery", "worker", "--celery-hostname", "w@h"]) == []


# --- exit wake-up --------------------------------------------------------------------------------
def test_selector_wakes_when_the_task_process_exits():
    import selectors
    import subprocess
    import time

    from airscale.runtime.exit_wakeup import watch_exit

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    sel = selectors.DefaultSelector()
    pidfd = watch_exit(sel, proc.pid)
    assert pidfd is not None
    t0 = time.monotonic()
    events = sel.select(timeout=10)  # Airflow's loop would wait min_heartbeat_interval here
    assert time.monotonic() - t0 < 5 and len(events) == 1
    key = events[0][0]
    handler, on_close = key.data
    assert handler(key.fileobj) is False  # nothing to read: Airflow unregisters and closes it
    on_close(key.fileobj)
    key.fileobj.close()
    assert sel.get_map() == {} and pidfd.fd is None
    assert proc.wait(timeout=0) == 0  # reapable at once


def test_exit_wakeup_wraps_the_supervisor_loop_and_cleans_up(monkeypatch):
    import selectors
    import subprocess

    from airflow.sdk.execution_time.supervisor import ActivitySubprocess

    from airscale.runtime import exit_wakeup

    seen = []
    monkeypatch.setattr(ActivitySubprocess, "_monitor_subprocess",
                        lambda self: seen.append(len(self.selector.get_map())) or "done")
    exit_wakeup.install()
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    sup = SimpleNamespace(selector=selectors.DefaultSelector(), pid=proc.pid)
    assert ActivitySubprocess._monitor_subprocess(sup) == "done"
    assert seen == [1]  # the pidfd was registered while Airflow's loop ran
    assert sup.selector.get_map() == {}  # and removed afterwards
    proc.wait()
    # A process that is already gone (no pidfd): Airflow's loop runs as before.
    assert ActivitySubprocess._monitor_subprocess(SimpleNamespace(selector=selectors.DefaultSelector(),
                                                                  pid=2**22 + 12345)) == "done"


# --- worker gc freeze ------------------------------------------------------------------------------
def test_worker_gc_freeze_freezes_live_objects_and_refreezes_periodically():
    import gc

    from airscale.runtime.worker_gc import Freezer

    before = gc.get_freeze_count()
    try:
        f = Freezer(refreeze_every=3)
        keep = [[i] for i in range(1000)]  # live containers: frozen at the next task
        f.before_task()
        after_first = gc.get_freeze_count()
        assert after_first >= before + 1000
        f.before_task()  # nothing new is live: the count barely moves
        assert gc.get_freeze_count() - after_first < 1000
        del keep
        f.before_task()  # the third task unfreezes, collects and freezes again: the lists are gone
        assert gc.get_freeze_count() < after_first
    finally:
        gc.unfreeze()


def test_worker_gc_freeze_acts_only_for_airflow_tasks():
    from celery.signals import task_prerun

    from airscale.runtime import worker_gc

    class Task:
        def __init__(self, name):
            self.name = name

    receivers = list(task_prerun.receivers)
    freezer = worker_gc.install(refreeze_every=10**6)
    try:
        task_prerun.send(sender=Task("other_task"))
        assert freezer.tasks == 0
        task_prerun.send(sender=Task("execute_workload"))
        assert freezer.tasks == 1
    finally:
        import gc

        gc.unfreeze()
        task_prerun.receivers[:] = receivers
        task_prerun.sender_receivers_cache.clear()


# --- api-server warm-up ----------------------------------------------------------------------
def test_execution_api_routes_are_built_when_the_app_is_created(monkeypatch):
    """Airflow's own Execution API app: built lazily by Cadwyn unless warmed; once warmed, its
    first request finds the routes there (no second build)."""
    from airflow.api_fastapi import app as api_app

    from airscale.runtime import api_warmup

    lazy = api_app.create_task_execution_api_app()
    assert lazy._cadwyn_initialized is False  # what Airflow does alone: built at the first request
    monkeypatch.setattr(api_app, "create_task_execution_api_app", api_app.create_task_execution_api_app)
    api_warmup.install()
    warm = api_app.create_task_execution_api_app()
    assert warm._cadwyn_initialized is True
    assert api_warmup.initialise(warm) is False
    # Not a Cadwyn app (another version): nothing to do, nothing fails.
    assert api_warmup.initialise(SimpleNamespace()) is False


# --- worker warm-up ----------------------------------------------------------------------------
WARMUP_PROBE = """
import gc, sys
from airscale.runtime import worker_warmup
done = worker_warmup.warm()
from airflow.sdk.api.client import Client
# The client's SSL context is cached in this process: a pool process forked now inherits it.
cached = Client._get_ssl_context_cached.cache_info().currsize
print(",".join(done), gc.get_freeze_count() > 0, cached, "airflow.sdk.execution_time.supervisor" in sys.modules)
"""


def test_worker_warmup_parses_builds_the_client_and_freezes(tmp_path):
    """In a fresh interpreter (it freezes the collector): Airflow's real parser parses the warm-up
    DAG, the Execution API client is built without a connection, and what they left is frozen."""
    import subprocess
    import sys

    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    out = subprocess.run([sys.executable, "-c", WARMUP_PROBE], capture_output=True, text=True, env=env,
                         timeout=120, check=True).stdout.strip().splitlines()[-1]
    assert out == "parse,client,supervisor True 1 True"


def test_worker_warmup_is_installed_when_configured(monkeypatch):
    from celery.signals import worker_init, worker_process_init

    from airscale.runtime.airflow_entry import install_accelerators

    monkeypatch.setenv("AIRFLOW__AIRSCALE__WORKER_DAG_CACHE_SECONDS", "0")
    monkeypatch.setenv("AIRFLOW__AIRSCALE__WORKER_WARMUP", "True")
    before = len(worker_init.receivers), len(worker_process_init.receivers)
    assert install_accelerators(["celery", "worker"]) == ["worker-warmup"]
    # In the worker's main process before the pool forks, and in each pool process as it starts.
    assert (len(worker_init.receivers), len(worker_process_init.receivers)) == (before[0] + 1, before[1] + 1)
    worker_init.receivers.pop()  # leave the signals as the other tests find them
    worker_process_init.receivers.pop()
