"""The versions a cluster runs (airscale.runtime.versions): the file `up` writes, the stamp
of older clusters, and when a plain `up` must leave the change to `airscale upgrade`."""

from __future__ import annotations

import pytest

from airscale.runtime.versions import (
    Versions,
    from_migrated_stamp,
    parse,
    recorded,
    upgrade_problem,
)


def test_render_parse_round_trip():
    v = Versions("3.3.2", "0.1.0", "/srv/venv/bin/python")
    assert parse(v.render()) == v


@pytest.mark.parametrize("text, airflow", [
    pytest.param("0b112f49112d airflow 3.2.2", "3.2.2", id="stamp"),
    pytest.param("0b112f49112d", None, id="revision-only"),
    pytest.param("", None, id="empty"),
])
def test_migrated_stamp(text, airflow):
    assert from_migrated_stamp(text) == airflow


def test_recorded_prefers_the_versions_file(tmp_path):
    vf, mf = tmp_path / "versions.conf", tmp_path / "migrated"
    assert recorded(vf, mf) is None
    mf.write_text("abc airflow 3.2.2\n")
    assert recorded(vf, mf) == Versions("3.2.2", "", "")
    vf.write_text(Versions("3.3.2", "0.1.0", "/p").render())
    assert recorded(vf, mf).airflow == "3.3.2"


@pytest.mark.parametrize("running, installed, refused", [
    pytest.param(Versions("3.3.2", "0.1.0", "/a"), Versions("3.3.2", "0.2.0", "/a"), False, id="airscale-only"),
    pytest.param(Versions("3.2.2", "0.1.0", "/a"), Versions("3.3.2", "0.1.0", "/a"), True, id="airflow-changed"),
    pytest.param(None, Versions("3.3.2", "0.1.0", "/a"), False, id="not-recorded"),
])
def test_upgrade_problem(running, installed, refused):
    problem = upgrade_problem(running, installed)
    assert bool(problem) == refused
    if refused:
        assert running.airflow in problem and installed.airflow in problem


@pytest.mark.parametrize("text, line", [
    pytest.param("Traceback (most recent call last):\npsycopg2.errors.LockNotAvailable: lock timeout\n\n"
                 "During handling of the above exception, another exception occurred:\n"
                 "sqlalchemy.exc.InternalError: (psycopg2.errors.InFailedSqlTransaction) current transaction is "
                 "aborted\n(Background on this error at: https://sqlalche.me/e/21/2j85)\n",
                 "psycopg2.errors.LockNotAvailable: lock timeout", id="root-cause-of-a-chain"),
    pytest.param("INFO starting\nERROR: something failed here\n", "ERROR: something failed here", id="error-line"),
    pytest.param("just output\n", "just output", id="no-error-last-line"),
    pytest.param("", "no output", id="empty"),
    pytest.param('Traceback (most recent call last):\n  File "/usr/bin/patroni", line 33, in <module>\n'
                 "    self.socket.bind(self.server_address)\nOSError: [Errno 98] Address already in use\n\n",
                 "OSError: [Errno 98] Address already in use", id="component-that-cannot-bind"),
    pytest.param("starting\n2026-12-07 FATAL:  data directory has wrong ownership\nexiting\n",
                 "2026-12-07 FATAL:  data directory has wrong ownership", id="postgres-fatal"),
    pytest.param("no such file\n", "no log", id="missing-log"),
])
def test_last_error_of_a_log(tmp_path, text, line):
    from airscale.runtime.cluster import _last_error

    log = tmp_path / "db-migrate.log"
    if text != "no such file\n":
        log.write_text("old run: ValueError: not this one\n" + text)
    start = len("old run: ValueError: not this one\n")
    assert _last_error(log, start) == line
