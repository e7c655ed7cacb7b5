"""The restart listener's decisions (pure tables), its probes against real sockets, and its
counts surviving a disk that refuses writes."""

from __future__ import annotations

import errno
import json
import socket
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from airscale.runtime.restart_listener import (
    START_SPACING,
    Keeper,
    Track,
    admit,
    backoff_delay,
    keeper_config,
    load_tracks,
    next_series,
    patroni_says_primary,
    probe,
    probe_dependency,
    reconcile,
)
from airscale.spec import Spec


@pytest.mark.parametrize("crashes, cap, delay", [
    pytest.param(1, 60, 1.0, id="first-restart-fast"),
    pytest.param(2, 60, 2.0, id="doubles"),
    pytest.param(5, 60, 16.0, id="keeps-doubling"),
    pytest.param(7, 60, 60.0, id="capped"),
    pytest.param(50, 60, 60.0, id="stays-capped"),
    pytest.param(9, 300, 256.0, id="cap-from-the-spec"),
    pytest.param(4, 3, 3.0, id="small-cap"),
])
def test_backoff_delay(crashes, cap, delay):
    assert backoff_delay(crashes, cap) == delay


@pytest.mark.parametrize("previous, uptime, series", [
    pytest.param(0, 3.0, 1, id="first-crash"),
    pytest.param(3, 3.0, 4, id="quick-crash-extends-series"),
    pytest.param(6, 600.0, 1, id="crash-after-healthy-run-resets"),
])
def test_series(previous, uptime, series):
    assert next_series(previous, uptime) == series


NOW = 1000.0
NEEDS = {"scheduler-1": ["database", "broker"], "postgres": []}


def info(state: str, start: float = 985.0, stop: float = 990.0, status: int = 1) -> dict:
    return {"statename": state, "start": start, "stop": stop, "exitstatus": status}


@pytest.mark.parametrize("state, track, down, starts, due, waiting, restarts", [
    pytest.param("RUNNING", Track(), set(), [], None, None, 0, id="running-left-alone"),
    pytest.param("STOPPED", Track(), set(), [], None, None, 0, id="stopped-is-a-decision"),
    pytest.param("STARTING", Track(due=5.0), set(), [], None, None, 0, id="started-by-someone-clears-plan"),
    pytest.param("EXITED", Track(), set(), [], NOW + 1, None, 1, id="first-crash-waits-1s"),
    pytest.param("EXITED", Track(series=3, ended=("EXITED", 10.0)), set(), [], NOW + 8, None, 1,
                 id="quick-crash-series-doubles"),
    pytest.param("FATAL", Track(), set(), [], NOW + 1, None, 1, id="fatal-is-restarted-too"),
    pytest.param("EXITED", Track(), {"database"}, [], None, "database", 1, id="database-down-waits-uncharged"),
    pytest.param("EXITED", Track(ended=("EXITED", 990.0), due=NOW - 1), set(), ["scheduler-1"], None, None, 0,
                 id="due-starts"),
    pytest.param("EXITED", Track(ended=("EXITED", 990.0), due=NOW + 5), set(), [], NOW + 5, None, 0,
                 id="not-yet-due"),
    pytest.param("EXITED", Track(ended=("EXITED", 990.0), due=NOW - 1), {"broker"}, [], None, "broker", 0,
                 id="due-but-broker-down-waits"),
    pytest.param("FATAL", Track(ended=("FATAL", 990.0), waiting_for="database", series=5), set(),
                 ["scheduler-1"], None, None, 0, id="dependency-back-starts-at-once"),
])
def test_reconcile(state, track, down, starts, due, waiting, restarts):
    p = reconcile(NOW, {"scheduler-1": info(state)}, {"scheduler-1": track}, NEEDS, down, cap=60)
    t = p.tracks["scheduler-1"]
    assert p.starts == starts
    assert (t.due, t.waiting_for) == (due, waiting)
    assert t.restarts == track.restarts + restarts


def test_a_crash_while_waiting_does_not_grow_the_series():
    t = Track(series=2)
    p = reconcile(NOW, {"scheduler-1": info("EXITED")}, {"scheduler-1": t}, NEEDS, {"database"}, 60)
    assert p.tracks["scheduler-1"].series == 2
    back = reconcile(NOW + 30, {"scheduler-1": info("EXITED")}, p.tracks, NEEDS, set(), 60)
    assert back.starts == ["scheduler-1"] and back.tracks["scheduler-1"].series == 0


def test_never_gives_up():
    """Any sequence of crashes keeps being restarted, the wait never above the cap."""
    tracks: dict[str, Track] = {}
    now = NOW
    for _ in range(40):
        ended = {"scheduler-1": info("FATAL", start=now, stop=now + 0.5)}
        p = reconcile(now, ended, tracks, NEEDS, set(), 60)
        t = p.tracks["scheduler-1"]
        assert t.due is not None and t.due - now <= 60
        now = t.due
        p = reconcile(now, ended, p.tracks, NEEDS, set(), 60)
        assert p.starts == ["scheduler-1"]
        tracks = p.tracks
    assert tracks["scheduler-1"].restarts == 40 and tracks["scheduler-1"].fatal == 40


def test_components_without_needs_entry_are_left_alone():
    p = reconcile(NOW, {"restart-listener": info("EXITED")}, {}, NEEDS, set(), 60)
    assert p.starts == [] and "restart-listener" not in p.tracks


ORDER = ["api-server-1", "api-server-2", "scheduler-1", "scheduler-2", "worker-a-1", "triggerer", "dag-processor"]


@pytest.mark.parametrize("due, last, starts, last_after", [
    pytest.param([], None, [], None, id="nothing-due"),
    pytest.param(["dag-processor", "scheduler-2", "scheduler-1", "triggerer"], None, ["scheduler-1"], NOW,
                 id="after-a-failover-one-at-a-time-scheduler-first"),
    pytest.param(["triggerer", "api-server-2"], None, ["api-server-2"], NOW, id="api-server-first"),
    pytest.param(["scheduler-2", "triggerer"], NOW - 1, [], NOW - 1, id="too-soon-after-the-last"),
    pytest.param(["scheduler-2"], NOW - START_SPACING, ["scheduler-2"], NOW, id="spacing-passed"),
    pytest.param(["redis", "postgres", "scheduler-1", "worker-a-1"], NOW - 1, ["redis", "postgres"], NOW - 1,
                 id="others-start-at-once"),
])
def test_admit(due, last, starts, last_after):
    assert admit(due, ORDER, last, NOW) == (starts, last_after)


def test_a_failover_restarts_airflow_one_by_one(tmp_path: Path, monkeypatch):
    """Four Airflow processes ended while the database was away: when it is back, the keeper
    starts them one per START_SPACING, the api-server and a scheduler first, and starts each
    exactly once."""
    from airscale.runtime import restart_listener

    names = ["dag-processor", "scheduler-1", "scheduler-2", "triggerer", "api-server-2"]
    cfg = tmp_path / "keeper.json"
    cfg.write_text(json.dumps({"backoff_max": 60, "dependencies": {}, "needs": {n: [] for n in names},
                               "start_order": ORDER}))
    sup = FakeSupervisor({n: info("EXITED", start=0, stop=1) for n in names})
    keeper = Keeper(tmp_path / "restarts.json", cfg, lambda: RPC(sup))
    clock = [NOW]
    monkeypatch.setattr(restart_listener.time, "time", lambda: clock[0])
    keeper.once(RPC(sup))  # the endings are seen: each due in 1 s
    order = []
    for _ in range(40):
        clock[0] += 1.0
        order += keeper.once(RPC(sup))
    assert order == ["api-server-2", "scheduler-1", "scheduler-2", "triggerer", "dag-processor"]
    started_at = [keeper.tracks[n] for n in order]
    assert all(t.due is None for t in started_at)
    assert sup.started == order


# -- probes against real sockets ------------------------------------------------------------
def _server(reply: bytes | None):
    """A listening socket that answers `reply` to whatever it receives, or never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    conns = []

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            conns.append(c)
            if reply is not None:
                c.recv(64)
                c.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    return srv, conns


@pytest.mark.parametrize("kind, reply, up", [
    pytest.param("postgres", b"N", True, id="postgres-answers-sslrequest"),
    pytest.param("redis", b"-NOAUTH Authentication required.\r\n", True, id="redis-answers-without-login"),
    pytest.param("postgres", None, False, id="hung-server-accepts-but-never-answers"),
])
def test_probe(kind, reply, up):
    srv, conns = _server(reply)
    try:
        assert probe(kind, "127.0.0.1", srv.getsockname()[1], timeout=0.5) is up
    finally:
        srv.close()
        for c in conns:
            c.close()


def test_probe_of_a_closed_port_is_down():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    assert probe("redis", "127.0.0.1", port, timeout=0.5) is False


def test_probe_of_real_postgres_and_redis_protocol_bytes():
    """The SSLRequest is the 8 bytes libpq sends first; Redis gets an inline PING."""
    seen = []
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def serve():
        c, _ = srv.accept()
        seen.append(c.recv(64))
        c.sendall(b"N")
        c.close()

    threading.Thread(target=serve, daemon=True).start()
    assert probe("postgres", "127.0.0.1", srv.getsockname()[1], timeout=1)
    srv.close()
    assert seen == [bytes.fromhex("0000000804d2162f")]


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _patroni(status: int):
    """A real HTTP server answering every GET with `status`, as a Patroni REST API does."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(status if self.path == "/primary" else 404)
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.mark.parametrize("statuses, endpoint_up, behind_up, up", [
    pytest.param([503, 200], True, None, True, id="one-node-primary"),
    pytest.param([503, 503], True, None, False, id="failover-standby-only-is-down"),
    pytest.param([None, 503], True, None, False, id="primary-gone-standby-not-yet-promoted"),
    pytest.param([200], False, None, False, id="endpoint-silent"),
    pytest.param([], True, True, True, id="pgbouncer-and-postgres-up"),
    pytest.param([], True, False, False, id="pgbouncer-answers-but-postgres-is-away"),
])
def test_probe_dependency_of_a_database_behind_a_proxy(statuses, endpoint_up, behind_up, up):
    servers, closers = [], []
    endpoint, conns = _server(b"N" if endpoint_up else None)
    closers.append(endpoint.close)
    d = {"kind": "postgres", "host": "127.0.0.1", "port": endpoint.getsockname()[1]}
    if behind_up is not None:
        if behind_up:
            behind, _ = _server(b"N")
            closers.append(behind.close)
            port = behind.getsockname()[1]
        else:  # nothing listens there
            port = _free_port()
        d["behind"] = {"kind": "postgres", "host": "127.0.0.1", "port": port}
    for status in statuses:
        if status is None:  # a node that is gone: nothing listens on its port
            servers.append(("127.0.0.1", _free_port()))
        else:
            srv = _patroni(status)
            servers.append(srv.server_address[:2])
            closers.append(srv.shutdown)
    if statuses:
        d["primary_of"] = [list(a) for a in servers]
    try:
        assert probe_dependency(d) is up
    finally:
        for close in closers:
            close()
        for c in conns:
            c.close()


def test_patroni_that_never_answers_is_not_primary():
    srv, conns = _server(None)
    try:
        assert patroni_says_primary("127.0.0.1", srv.getsockname()[1], timeout=0.5) is False
    finally:
        srv.close()
        for c in conns:
            c.close()


# -- the keeper's I/O ---------------------------------------------------------------------
class FakeSupervisor:
    """supervisord's XML-RPC as far as the keeper uses it (the real one is in the integration
    tests: a killed component is restarted and counted)."""

    def __init__(self, infos):
        self.infos = infos
        self.started = []

    def getAllProcessInfo(self):
        return [dict(i, name=n) for n, i in self.infos.items()]

    def startProcess(self, name, wait):
        self.started.append(name)
        self.infos[name] = info("STARTING")


class RPC:
    def __init__(self, sup):
        self.supervisor = sup


def test_keeper_keeps_counting_when_the_disk_refuses_writes(tmp_path: Path, monkeypatch):
    from airscale.runtime import restart_listener

    cfg = tmp_path / "keeper.json"
    cfg.write_text(json.dumps({"backoff_max": 60, "dependencies": {}, "needs": {"worker-a-1": []}}))
    sup = FakeSupervisor({"worker-a-1": info("EXITED", start=0, stop=1)})
    keeper = Keeper(tmp_path / "restarts.json", cfg, lambda: RPC(sup))
    real_save = restart_listener.save_tracks

    def disk_full(path, tracks):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(restart_listener, "save_tracks", disk_full)
    keeper.once(RPC(sup))  # the crash is seen and counted, the file cannot be written
    keeper.tracks["worker-a-1"] = replace(keeper.tracks["worker-a-1"], due=0.0)
    keeper.once(RPC(sup))
    assert sup.started == ["worker-a-1"]
    assert not (tmp_path / "restarts.json").exists()
    monkeypatch.setattr(restart_listener, "save_tracks", real_save)
    keeper.once(RPC(sup))  # space is back: the counts reach the file
    assert load_tracks(tmp_path / "restarts.json")["worker-a-1"].restarts == 1


def test_keeper_config_names_dependencies_and_needs():
    spec = Spec.model_validate({"cluster": {"base_port": 30000}})
    from airscale.assembly import CAPABILITIES
    from airscale.runtime.components import components
    from airscale.runtime.layout import Layout

    comps = components(spec, Layout(Path("/tmp/x")), Path("/usr/lib/postgresql/15/bin"), CAPABILITIES)
    cfg = keeper_config(spec, comps)
    assert cfg["dependencies"]["database"] == {"kind": "postgres", "host": "127.0.0.1", "port": 30001}
    assert cfg["dependencies"]["broker"] == {"kind": "redis", "host": "127.0.0.1", "port": 30002}
    assert cfg["needs"]["scheduler-1"] == ["database", "broker"]
    assert cfg["needs"]["worker-default-1"] == ["database", "broker"]
    assert cfg["needs"]["postgres"] == [] and cfg["needs"]["redis"] == []
    assert cfg["backoff_max"] == 60
    assert cfg["start_order"][:3] == ["api-server-1", "api-server-2", "scheduler-1"]
    assert "postgres" not in cfg["start_order"] and "dag-processor" in cfg["start_order"]


@pytest.mark.parametrize("spec_data, extra", [
    pytest.param({"database": {"pgbouncer": True}},
                 {"behind": {"kind": "postgres", "host": "127.0.0.1", "port": 30001}},
                 id="pgbouncer-probes-postgres-behind-it"),
    pytest.param({"ha": {"database": {"enabled": True}, "broker": {"enabled": True}}}, {"primary_of": "patroni"},
                 id="ha-asks-patroni-for-a-primary"),
])
def test_keeper_config_database_behind_a_proxy(spec_data, extra):
    from airscale.assembly import CAPABILITIES
    from airscale.runtime.components import components
    from airscale.runtime.layout import Layout

    spec = Spec.model_validate({"cluster": {"base_port": 30000}, **spec_data})
    comps = components(spec, Layout(Path("/tmp/x")), Path("/usr/lib/postgresql/15/bin"), CAPABILITIES)
    db = keeper_config(spec, comps)["dependencies"]["database"]
    if extra.get("primary_of") == "patroni":
        assert db["primary_of"] == [["127.0.0.1", spec.ports.patroni_api(i)] for i in (1, 2)]
        assert "behind" not in db
    else:
        assert db["behind"] == extra["behind"] and "primary_of" not in db
