"""Socket folders outside the data folder (a long data path) must be this account's alone."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from airscale.errors import AirscaleError
from airscale.runtime.layout import Layout, check_shared_sockets, private_dir


def test_a_missing_folder_is_made_private(tmp_path: Path):
    d = private_dir(tmp_path / "a")
    assert d.is_dir() and (d.stat().st_mode & 0o777) == 0o700


def test_our_own_private_folder_is_accepted(tmp_path: Path):
    (tmp_path / "a").mkdir(mode=0o700)
    private_dir(tmp_path / "a")


@pytest.mark.parametrize(
    "make, problem",
    [
        pytest.param(lambda p: (p.parent / "elsewhere").mkdir(mode=0o700) or p.symlink_to(p.parent / "elsewhere"),
                     "is a symbolic link", id="symlink"),
        pytest.param(lambda p: p.write_text(""), "is not a folder", id="a-file"),
        pytest.param(lambda p: p.mkdir() or os.chmod(p, 0o777), "is open to other accounts", id="world-writable"),
        pytest.param(lambda p: p.mkdir() or os.chmod(p, 0o750), "is open to other accounts", id="group-readable"),
    ],
)
def test_a_folder_someone_else_could_use_is_refused(tmp_path: Path, make, problem):
    path = tmp_path / "airscale-x-fork"
    make(path)
    with pytest.raises(AirscaleError, match=problem):
        private_dir(path)


def test_a_folder_of_another_account_is_refused(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("only root can give a folder away")
    path = tmp_path / "theirs"
    path.mkdir(mode=0o700)
    os.chown(path, 65534, 65534)
    with pytest.raises(AirscaleError, match="belongs to uid 65534"):
        private_dir(path)


def long_layout(tmp_path: Path) -> Layout:
    layout = Layout(tmp_path / ("x" * 120))
    assert not layout.forkserver_socket.is_relative_to(layout.root)
    return layout


def test_up_refuses_a_planted_supervisor_socket(tmp_path: Path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    layout = long_layout(tmp_path)
    layout.supervisor_socket.write_text("not a socket")
    with pytest.raises(AirscaleError, match="is not this account's supervisor socket"):
        check_shared_sockets(layout)
    layout.supervisor_socket.unlink()
    with socket.socket(socket.AF_UNIX) as s:  # a real socket of ours (a cluster that ran) is fine
        s.bind(str(layout.supervisor_socket))
        check_shared_sockets(layout)
    assert (layout.forkserver_socket.parent.stat().st_mode & 0o777) == 0o700
