"""What the dag-processor's folder watch makes of file-system events (airscale.runtime.dag_watch)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from airscale.runtime.dag_watch import Pending, Requeue, classify

ADDED, MODIFIED, DELETED = 1, 2, 3
B = {"dags-folder": Path("/srv/dags")}


@pytest.mark.parametrize(
    "changes,edited,relist",
    [
        pytest.param({(MODIFIED, "/srv/dags/etl.py")}, {("dags-folder", Path("etl.py"))}, set(), id="edit-parsed"),
        pytest.param({(MODIFIED, "/srv/dags/team/a/etl.py")}, {("dags-folder", Path("team/a/etl.py"))}, set(),
                     id="edit-in-subfolder"),
        pytest.param({(ADDED, "/srv/dags/new.py")}, {("dags-folder", Path("new.py"))}, {"dags-folder"},
                     id="new-file-listed-and-parsed-if-known"),
        pytest.param({(DELETED, "/srv/dags/old.py")}, set(), {"dags-folder"}, id="deleted-file-listed"),
        pytest.param({(MODIFIED, "/srv/dags/pack.zip")}, {("dags-folder", Path("pack.zip"))}, set(), id="zip-dag"),
        pytest.param({(MODIFIED, "/srv/dags/.airflowignore")}, set(), {"dags-folder"}, id="ignore-file-lists"),
        pytest.param({(MODIFIED, "/srv/dags/readme.md")}, set(), set(), id="other-file-edit-ignored"),
        pytest.param({(DELETED, "/srv/dags/team")}, set(), {"dags-folder"}, id="folder-removed-lists"),
        pytest.param({(ADDED, "/srv/dags/team")}, set(), {"dags-folder"}, id="folder-moved-in-lists"),
        pytest.param({(MODIFIED, "/srv/other/etl.py")}, set(), set(), id="outside-every-bundle"),
        # Not DAG files by airscale.spec.dagfiles' rule: neither parsed nor a reason to list.
        pytest.param({(ADDED, "/srv/dags/.git/objects/ab"), (MODIFIED, "/srv/dags/.git/hooks/x.py")}, set(), set(),
                     id="hidden-folder-ignored"),
        pytest.param({(ADDED, "/srv/dags/__pycache__/etl.cpython-311.pyc")}, set(), set(), id="pycache-ignored"),
        pytest.param({(ADDED, "/srv/dags/.#etl.py"), (DELETED, "/srv/dags/.#etl.py")}, set(), set(),
                     id="editor-lock-ignored"),
        pytest.param({(DELETED, "/srv/dags/.venv")}, set(), set(), id="hidden-folder-removed-ignored"),
        pytest.param({(MODIFIED, "/srv/dags/team/.airflowignore")}, set(), {"dags-folder"},
                     id="ignore-file-in-subfolder-lists"),
        # An editor writing a temporary file and renaming it over the DAG file: one batch.
        pytest.param({(ADDED, "/srv/dags/etl.py"), (DELETED, "/srv/dags/etl.py.tmp")},
                     {("dags-folder", Path("etl.py"))}, {"dags-folder"}, id="rename-over"),
    ],
)
def test_classify(changes, edited, relist):
    pending = Pending()
    classify(changes, B, pending)
    assert (pending.edited, pending.relist) == (edited, relist)


def test_classify_picks_the_bundle_holding_the_file_and_accumulates():
    bundles = {"a": Path("/srv/a"), "b": Path("/srv/b")}
    pending = Pending()
    classify({(MODIFIED, "/srv/b/x.py")}, bundles, pending)
    classify({(DELETED, "/srv/a/y.py")}, bundles, pending)
    assert pending.edited == {("b", Path("x.py"))} and pending.relist == {"a"}


@pytest.mark.parametrize(
    "edits,checks",
    [
        # (edit times) -> [(time, files due then)]: Airflow drops a parse stored < 31 s after the last
        pytest.param([0], [(40, [])], id="one-edit-parsed-once"),
        pytest.param([0, 10], [(39, []), (41, ["f"]), (80, [])], id="second-edit-inside-throttle-requeued"),
        pytest.param([0, 40], [(100, [])], id="edits-far-apart-parsed-each-time"),
        pytest.param([0, 10, 20], [(50, []), (52, ["f"]), (90, [])], id="burst-of-edits-one-requeue-after-the-last"),
    ],
)
def test_requeue_after_the_serialization_throttle(edits, checks):
    r = Requeue(throttle_s=31)
    for t in edits:
        r.edited("f", t)
    assert [r.due(t) for t, _ in checks] == [due for _, due in checks]


@pytest.fixture
def scans(monkeypatch):
    """dag_watch's hooks installed over stand-ins for the manager's own methods (undone after
    the test); what reaches the stand-in of its mtime scan is listed."""
    from airflow.dag_processing.manager import DagFileProcessorManager

    from airscale.runtime import dag_watch

    monkeypatch.setattr(DagFileProcessorManager, "prepare_bundles", lambda self: None)
    monkeypatch.setattr(DagFileProcessorManager, "_queue_requested_files_for_parsing", lambda self: None)
    seen: list = []
    monkeypatch.setattr(DagFileProcessorManager, "prepare_file_queue", lambda self, known: seen.append(known))
    dag_watch.install()
    return seen


def test_installed_hooks_hand_the_watch_over_to_the_manager(scans, tmp_path):
    """The patched manager methods against a stand-in manager: a real watch on a real folder,
    Airflow's own DagFileInfo and queue modes."""
    from types import SimpleNamespace

    from airflow.dag_processing.manager import DagFileInfo, DagFileProcessorManager

    (tmp_path / "known.py").write_text("# v1\n")
    queued, refreshed = [], set()
    manager = SimpleNamespace(
        _dag_bundles=[SimpleNamespace(name="dags-folder", path=tmp_path, supports_versioning=False),
                      SimpleNamespace(name="git", path=tmp_path, supports_versioning=True)],
        _file_stats={DagFileInfo(rel_path=Path("known.py"), bundle_name="dags-folder", bundle_path=tmp_path): None},
        _add_files_to_queue=lambda files, mode: queued.append(([str(f.rel_path) for f in files], mode)),
        request_bundle_refresh=lambda names: refreshed.update(names),
        log=SimpleNamespace(info=lambda *a: None),
    )
    DagFileProcessorManager.prepare_bundles(manager)
    try:
        assert set(manager._airscale_watch.bundles) == {"dags-folder"}  # versioned bundles are not watched
        time.sleep(0.5)  # the watch is set up
        (tmp_path / "known.py").write_text("# v2\n")
        (tmp_path / "new.py").write_text("# new\n")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (queued and refreshed):
            DagFileProcessorManager._queue_requested_files_for_parsing(manager)
            time.sleep(0.1)
        # The edited file goes first in the queue; the new one is left to Airflow's listing.
        assert queued == [(["known.py"], "frontprio")] and refreshed == {"dags-folder"}
        # The manager's mtime scan runs once, then not again within SCAN_EVERY_S.
        DagFileProcessorManager.prepare_file_queue(manager, {"k": 1})
        DagFileProcessorManager.prepare_file_queue(manager, {"k": 2})
        assert scans == [{"k": 1}]
    finally:
        manager._airscale_watch.stop()


def _failing_classify(*args):
    raise RuntimeError("classify failed")


@pytest.mark.parametrize(
    "end,warned",
    [
        pytest.param("stop", False, id="stopped"),
        pytest.param("error", True, id="failed-once-warned"),
    ],
)
def test_the_scan_runs_at_every_loop_once_the_watch_ended(scans, monkeypatch, tmp_path, caplog, end, warned):
    """Nothing reports changes once the watch ended (an error in its thread, or stopped): the
    manager's mtime scan is no longer held back, as with stock Airflow, and an unexpected end is
    logged once as a warning."""
    from types import SimpleNamespace

    from airflow.dag_processing.manager import DagFileProcessorManager

    from airscale.runtime import dag_watch

    watch = dag_watch.Watch({"dags-folder": tmp_path})
    manager = SimpleNamespace(_airscale_watch=watch, _airscale_scanned=0.0)
    caplog.set_level(logging.WARNING, logger=dag_watch.__name__)
    thread = watch.start()
    try:
        time.sleep(0.5)  # the watch is set up
        # While it runs: one scan, then none within SCAN_EVERY_S.
        DagFileProcessorManager.prepare_file_queue(manager, {"k": 1})
        DagFileProcessorManager.prepare_file_queue(manager, {"k": 2})
        assert thread.is_alive() and scans == [{"k": 1}]
        if end == "stop":
            watch.stop()
        else:
            monkeypatch.setattr(dag_watch, "classify", _failing_classify)
            (tmp_path / "etl.py").write_text("# an event for the watch\n")
        thread.join(timeout=10)
        assert not thread.is_alive()
        DagFileProcessorManager.prepare_file_queue(manager, {"k": 3})
        DagFileProcessorManager.prepare_file_queue(manager, {"k": 4})
        assert scans == [{"k": 1}, {"k": 3}, {"k": 4}]
    finally:
        watch.stop()
    warnings = [r for r in caplog.records if r.name == dag_watch.__name__ and r.levelno == logging.WARNING]
    assert len(warnings) == int(warned)
    if warned:
        assert "classify failed" in warnings[0].getMessage()
