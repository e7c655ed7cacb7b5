"""`up --dry-run` puts every generated file back (airscale.runtime.apply.snapshot/restore), and
never touches a database's or a running process's own files."""

from __future__ import annotations

import os

from airscale.runtime.apply import restore, snapshot


def test_restore_puts_back_content_mode_and_time_and_removes_new_files(tmp_path):
    cfg = tmp_path / "airflow" / "airflow.cfg"
    cfg.parent.mkdir()
    cfg.write_text("[core]\nparallelism = 32\n")
    os.chmod(cfg, 0o600)
    os.utime(cfg, (1_000_000, 1_000_000))
    before = snapshot(tmp_path)
    cfg.write_text("[core]\nparallelism = 64\n")
    os.chmod(cfg, 0o644)
    (tmp_path / "airflow" / "new.yml").write_text("x: 1\n")
    restore(tmp_path, before)
    assert cfg.read_text() == "[core]\nparallelism = 32\n"
    assert cfg.stat().st_mode & 0o777 == 0o600 and cfg.stat().st_mtime == 1_000_000
    assert not (tmp_path / "airflow" / "new.yml").exists()


def test_database_and_process_files_are_left_alone(tmp_path):
    pg = tmp_path / "postgres"
    (pg / "pg_stat").mkdir(parents=True)
    (pg / "PG_VERSION").write_text("15\n")
    (pg / "airscale.conf").write_text("port = 1\n")
    (pg / "pg_stat" / "x.json").write_text("{}")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "restarts.json").write_text("{}")
    before = snapshot(tmp_path)
    assert set(before) == {pg / "airscale.conf"}
    (tmp_path / "state" / "restarts.json").write_text('{"a": 1}')  # the restart listener wrote it
    (pg / "pg_stat" / "y.json").write_text("{}")
    restore(tmp_path, before)
    assert (tmp_path / "state" / "restarts.json").read_text() == '{"a": 1}'
    assert (pg / "pg_stat" / "y.json").exists()
