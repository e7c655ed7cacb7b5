"""The keeper: every component that ends is started again, for as long as the cluster is up.

supervisord restarts a process that fails while starting only `startretries` times, then marks
it FATAL and gives up; one that ran and died it restarts at once, forever, and keeps no count.
Neither is what a cluster needs after its database was away for a minute: components that
crashed on the lost connections, failed again at start while it was still away, and stayed dead
once it was back. So programs run with `autorestart=false`, and this supervisor event listener
decides every restart (`reconcile`, pure):

- A component that ended on its own (EXITED, or FATAL after failing at start) is started again
  after 1, 2, 4 ... s, doubling with each quick crash in a row, capped at
  `ha.restart_backoff_max` (Kubernetes' CrashLoopBackOff does the same, capped at 300 s). It
  never gives up.
- A component whose dependency (the metadata database, the broker) does not answer waits for it
  and is not charged for the crash: it was the dependency's. When the dependency answers again
  every component waiting for it starts at once, with its crash series reset.
- STOPPED is somebody's decision (`airscale stop`, the autoscaler, `down`): never undone here.
- Airflow's processes start one at a time, `START_SPACING` s apart, in `STAGGERED_KINDS` order
  (`admit`). Each start is seconds of imports on a full core; after a database failover four or
  five of them were due together, and on two cores the api-server still serving answered in
  2-6 s while they all started. Other components (PostgreSQL, Redis, the exporters) start at once.

Why a loop besides the events: supervisord drops events when a listener's buffer overflows
(a listener that crashed in a loop on a full disk lost exit events, and nothing restarted the
processes they were about). So a thread re-reads the state of every process every
`PASS_SECONDS`; events only wake it sooner. The counts live in memory and are written to a JSON
file (atomically) that `airscale status` and the exporter read; a write that fails (disk full)
is tried again at the next pass, never fatal.

Dependencies are probed without credentials, as `pg_isready` does: PostgreSQL (and PgBouncer,
HAProxy in front of Patroni) answer an SSLRequest with one byte before any login, Redis answers
an inline PING (+PONG, or -NOAUTH). A port that accepts connections but never answers (a hung
server) counts as down. A proxy answers for what is behind it even while that is away, so the
database is up only when what serves it is too: PgBouncer's PostgreSQL answers, and with
ha.database one Patroni node says it is the primary (`GET /primary`: 200). Without that, a
component that ended in a failover was started again against HAProxy's read-only standby, exited
again on its first write, and was charged a crash each time.

With `ha.broker` the broker is whichever Redis node the Sentinels name now, so its probe asks
them first (`airscale.runtime.broker.ask_sentinels`, with the password read from the cluster's
0600 secrets file) and PINGs that node. The listener's configuration (`keeper.json`, written by
`airscale up`) names each dependency's address, which components need which, and the order in
which Airflow's processes start.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

FIRST_DELAY = 1.0
DEFAULT_MAX_DELAY = 60.0
# A process that stayed up this long before dying starts a new series of crashes.
HEALTHY_UPTIME = 60.0
PASS_SECONDS = 2.0
PROBE_TIMEOUT = 2.0
ENDED = ("EXITED", "FATAL")
# Airflow's processes, in the order they start again when several are due (`admit`): the
# api-server first (with none, no task can start, heartbeat or finish, and the REST API is
# down), then a scheduler, then what runs tasks, then the rest.
STAGGERED_KINDS = ("api-server", "scheduler", "worker-forkserver", "worker", "triggerer", "dag-processor")
# Seconds between two of their starts. A start's imports take 2.4 s of CPU for a scheduler and
# 8.4 s for an api-server on an idle core of this machine, two to three times that under load:
# 5 s apart, at most two overlap, and the first scheduler of four due is back at once.
START_SPACING = 5.0
# Supervisord's own states of a process that is (or is being) up: nothing to do here.
ALIVE = ("RUNNING", "STARTING", "BACKOFF", "STOPPING")


def backoff_delay(quick_crashes: int, cap: float = DEFAULT_MAX_DELAY) -> float:
    """Seconds before restart #n of a series of quick crashes (n >= 1): 1, 2, 4 ... cap."""
    return min(cap, FIRST_DELAY * 2 ** max(0, quick_crashes - 1))


def next_series(previous: int, uptime: float) -> int:
    """The length of the crash series after a crash that followed `uptime` seconds up."""
    return 1 if uptime >= HEALTHY_UPTIME else previous + 1


@dataclass(frozen=True)
class Track:
    """What the keeper knows of one component (one entry of restarts.json)."""

    restarts: int = 0
    series: int = 0
    fatal: int = 0  # times supervisord gave up on it at start (it was started again)
    # The ending already handled: (state, stop time), so each ending counts once.
    ended: tuple[str, float] | None = None
    last: dict | None = None  # the last ending: state, exit status, uptime, when
    due: float | None = None  # when the next start is due (epoch seconds)
    waiting_for: str | None = None  # a dependency that does not answer


@dataclass(frozen=True)
class Pass:
    tracks: dict[str, Track]
    starts: list[str] = field(default_factory=list)


def reconcile(now: float, infos: Mapping[str, Mapping], tracks: Mapping[str, Track],
              needs: Mapping[str, list[str]], down: set[str], cap: float,
              min_delay: Mapping[str, float] | None = None) -> Pass:
    """One pass over every component (pure): which to start now, and what to remember.

    `infos`: supervisord's process infos by name; `needs`: the dependencies of each component
    the keeper looks after (others are left alone); `down`: dependencies that do not answer;
    `min_delay`: least seconds before a component's restart (Component.restart_delay).
    """
    out: dict[str, Track] = dict(tracks)
    starts: list[str] = []
    for name, deps in needs.items():
        info = infos.get(name)
        if info is None:
            continue
        t = out.get(name, Track())
        state = info.get("statename", "UNKNOWN")
        if state not in ENDED:
            if t.due is not None or t.waiting_for is not None:
                t = replace(t, due=None, waiting_for=None)
            out[name] = t
            continue
        blocked = next((d for d in deps if d in down), None)
        stop = float(info.get("stop") or 0.0)
        if t.ended != (state, stop):  # a new ending
            uptime = max(0.0, stop - float(info.get("start") or stop)) if state == "EXITED" else 0.0
            last = {"state": state, "exitstatus": info.get("exitstatus"), "uptime": round(uptime, 1),
                    "at": stop or now, "waiting_for": blocked}
            t = replace(t, ended=(state, stop), last=last, restarts=t.restarts + 1,
                        fatal=t.fatal + (state == "FATAL"))
            if blocked is not None:
                # The dependency's fault: wait for it, and charge the component nothing.
                t = replace(t, due=None, waiting_for=blocked)
            else:
                series = next_series(t.series, uptime)
                delay = max(backoff_delay(series, cap), (min_delay or {}).get(name, 0.0))
                t = replace(t, series=series, due=now + delay, waiting_for=None)
        elif blocked is not None:
            t = replace(t, due=None, waiting_for=blocked)
        elif t.waiting_for is not None:
            # Its dependency answers again: start now, a fresh series.
            t = replace(t, due=None, waiting_for=None, series=0)
            starts.append(name)
        elif t.due is None or t.due <= now:
            t = replace(t, due=None)
            starts.append(name)
        out[name] = t
    return Pass(out, starts)


def admit(due: list[str], order: list[str], last_start: float | None, now: float,
          spacing: float = START_SPACING) -> tuple[list[str], float | None]:
    """Which of the components due now start in this pass (pure), and the time of the last
    staggered start after it: those not in `order` all start; of those in it, the first in
    `order`, if `spacing` s have passed since `last_start`. The others stay due (their tracks
    say so) and are admitted in a later pass."""
    rank = {name: i for i, name in enumerate(order)}
    out = [n for n in due if n not in rank]
    staggered = sorted((n for n in due if n in rank), key=rank.__getitem__)
    if staggered and (last_start is None or now - last_start >= spacing):
        out.append(staggered[0])
        last_start = now
    return out, last_start


# -- dependency probes ---------------------------------------------------------------------
def _answers(host: str, port: int, hello: bytes, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(hello)
            return bool(s.recv(1))
    except OSError:
        return False


# PostgreSQL's SSLRequest: length 8, code 80877103; the server answers 'S' or 'N' before login.
_SSL_REQUEST = struct.pack("!II", 8, 80877103)


def probe(kind: str, host: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether a dependency answers (no credentials needed)."""
    hello = _SSL_REQUEST if kind == "postgres" else b"PING\r\n"
    return _answers(host, port, hello, timeout)


def patroni_says_primary(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether the Patroni node whose REST API is at host:port holds the leader key and runs
    a writable primary (Patroni's `GET /primary` answers 200; a standby or a node without the
    key answers 503). No credentials: the REST API's reads are open on loopback."""
    import http.client

    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/primary")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def probe_dependency(d: Mapping) -> bool:
    """Whether a dependency of keeper.json answers; a Sentinel-watched broker is the node the
    Sentinels name as primary now (none named: down); a database behind a proxy answers when
    the server behind it does (`behind`) and, with ha.database, when a node is primary
    (`primary_of`: the Patroni REST addresses)."""
    if d["kind"] != "sentinel":
        if not probe(d["kind"], d["host"], int(d["port"])):
            return False
        behind = d.get("behind")
        if behind and not probe(behind["kind"], behind["host"], int(behind["port"])):
            return False
        nodes = d.get("primary_of")
        return not nodes or any(patroni_says_primary(h, int(p)) for h, p in nodes)
    from airscale.runtime.broker import ask_sentinels

    try:
        password = json.loads(Path(d["secrets"]).read_text())["redis_password"]
    except (OSError, ValueError, KeyError):
        return False
    addr = ask_sentinels([(h, int(p)) for h, p in d["sentinels"]], password, timeout=PROBE_TIMEOUT)
    return addr is not None and probe("redis", addr[0], addr[1])


def keeper_config(spec, comps) -> dict:
    """keeper.json (pure): the backoff cap, each dependency's address and probe, and what each
    component needs. An external broker over TLS is not probed (a plain PING gets no answer
    there): its components get the backoff alone."""
    from urllib.parse import urlsplit

    from airscale.runtime import pgbouncer
    from airscale.runtime.broker import sentinel_addresses, sentinel_on
    from airscale.runtime.component import BROKER, DATABASE
    from airscale.runtime.layout import Layout
    from airscale.spec.ports import HA_DATABASE_NODES

    deps: dict[str, dict] = {}
    if spec.database.url:
        u = urlsplit(spec.database.url)
        deps[DATABASE] = {"kind": "postgres", "host": u.hostname or "127.0.0.1", "port": u.port or 5432}
    else:
        port = spec.ports.pgbouncer if pgbouncer.enabled(spec) else spec.ports.postgres
        deps[DATABASE] = {"kind": "postgres", "host": spec.client_host, "port": port}
        if spec.ha.database.enabled:
            deps[DATABASE]["primary_of"] = [[spec.client_host, spec.ports.patroni_api(i)] for i in HA_DATABASE_NODES]
        elif pgbouncer.enabled(spec):
            deps[DATABASE]["behind"] = {"kind": "postgres", "host": spec.client_host, "port": spec.ports.postgres}
    if spec.uses_celery:
        if sentinel_on(spec):
            # Only a file name: the password stays in the 0600 secrets file.
            deps[BROKER] = {"kind": "sentinel", "sentinels": [list(a) for a in sentinel_addresses(spec)],
                            "secrets": str(Layout(spec.data_path).secrets_file)}
        elif spec.broker.url is None:
            deps[BROKER] = {"kind": "redis", "host": spec.client_host, "port": spec.ports.redis}
        elif urlsplit(spec.broker.url).scheme == "redis":
            u = urlsplit(spec.broker.url)
            deps[BROKER] = {"kind": "redis", "host": u.hostname or "127.0.0.1", "port": u.port or 6379}
    return {
        "backoff_max": spec.ha.restart_backoff_max,
        "dependencies": deps,
        "needs": {c.name: [d for d in c.needs if d in deps] for c in comps},
        "min_delay": {c.name: c.restart_delay for c in comps if c.restart_delay},
        "start_order": [c.name for c in sorted((c for c in comps if c.kind in STAGGERED_KINDS),
                                               key=lambda c: (STAGGERED_KINDS.index(c.kind), c.name))],
    }


# -- I/O -----------------------------------------------------------------------------------
def _log(msg: str) -> None:
    print(f"{time.strftime('%F %T')} {msg}", file=sys.stderr, flush=True)


def load_tracks(path: Path) -> dict[str, Track]:
    """The counts of an earlier keeper of this cluster (it restarts with supervisord's reload)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    out = {}
    for name, d in data.items():
        if isinstance(d, dict):
            ended = d.get("ended")
            out[name] = Track(restarts=int(d.get("restarts", 0)), series=int(d.get("series", 0)),
                              fatal=int(d.get("fatal", 0)), ended=tuple(ended) if ended else None,
                              last=d.get("last"), due=d.get("due"), waiting_for=d.get("waiting_for"))
    return out


def save_tracks(path: Path, tracks: Mapping[str, Track]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({n: asdict(t) for n, t in tracks.items()}, indent=1))
    os.replace(tmp, path)


class Keeper:
    """The loop: reads supervisord, probes dependencies, starts what `reconcile` says."""

    def __init__(self, state_file: Path, config_file: Path, rpc_factory: Callable[[], object]):
        self.state_file = state_file
        self.config_file = config_file
        self.rpc_factory = rpc_factory
        self.tracks = load_tracks(state_file)
        self.wake = threading.Event()
        self.dirty = True
        self.down: set[str] = set()
        self.last_staggered: float | None = None  # when one of `start_order` was last started
        self.waiting_turn: set[str] = set()

    def config(self) -> dict:
        try:
            return json.loads(self.config_file.read_text())
        except (OSError, ValueError):
            return {"backoff_max": DEFAULT_MAX_DELAY, "dependencies": {}, "needs": {}}

    def once(self, rpc) -> list[str]:
        cfg = self.config()
        needs = cfg.get("needs", {})
        infos = {i["name"]: i for i in rpc.supervisor.getAllProcessInfo()}
        down = {name: not probe_dependency(d)
                for name, d in cfg.get("dependencies", {}).items()
                # Probe only what an ended component waits for: a quiet pass costs nothing.
                if any(infos.get(c, {}).get("statename") in ENDED and name in deps for c, deps in needs.items())}
        down_now = {n for n, is_down in down.items() if is_down}
        for dep in sorted(down_now - self.down):
            _log(f"{dep} does not answer: components that need it wait for it")
        for dep in sorted(self.down - down_now):
            if dep in down:
                _log(f"{dep} answers again")
        self.down = down_now
        p = reconcile(time.time(), infos, self.tracks, needs, down_now, float(cfg.get("backoff_max", DEFAULT_MAX_DELAY)),
                      cfg.get("min_delay", {}))
        for name, t in p.tracks.items():
            old = self.tracks.get(name)
            if old is None or old.ended != t.ended:
                if t.last is not None and (old is None or old.last != t.last):
                    self._log_ending(name, t)
        if p.tracks != self.tracks:
            self.dirty = True
        self.tracks = p.tracks
        starts, self.last_staggered = admit(p.starts, cfg.get("start_order", []), self.last_staggered, time.time())
        for name in sorted(set(p.starts) - set(starts)):
            if name not in self.waiting_turn:
                _log(f"{name}: due, waiting its turn (Airflow's processes start {START_SPACING:.0f}s apart)")
        self.waiting_turn = set(p.starts) - set(starts)
        for name in starts:
            try:
                rpc.supervisor.startProcess(name, False)
                _log(f"{name}: started again (restart #{self.tracks[name].restarts})")
            except Exception as e:  # removed by a reload, or already started by someone
                _log(f"{name}: start skipped ({e.__class__.__name__}: {e})")
        self._save()
        return starts

    def _log_ending(self, name: str, t: Track) -> None:
        last = t.last or {}
        how = ("gave up at start (FATAL)" if last.get("state") == "FATAL"
               else f"exited with status {last.get('exitstatus')} after {last.get('uptime', 0):.0f}s")
        then = (f"waiting for {t.waiting_for}" if t.waiting_for
                else f"starting again in {max(0.0, (t.due or time.time()) - time.time()):.0f}s")
        _log(f"{name}: {how}; {then} (restart #{t.restarts})")

    def _save(self) -> None:
        if not self.dirty:
            return
        try:
            save_tracks(self.state_file, self.tracks)
            self.dirty = False
        except OSError as e:  # disk full: keep the counts in memory, try at the next pass
            _log(f"cannot write {self.state_file} ({e.strerror}); keeping the counts in memory")

    def run(self) -> None:
        rpc = None
        while True:
            self.wake.wait(PASS_SECONDS)
            self.wake.clear()
            try:
                rpc = rpc or self.rpc_factory()
                self.once(rpc)
            except Exception as e:  # supervisord busy or reloading: the next pass tries again
                _log(f"pass failed ({e.__class__.__name__}: {e}); trying again")
                rpc = None


def main() -> None:
    from supervisor import childutils

    state_file = Path(sys.argv[1])
    config_file = Path(sys.argv[2]) if len(sys.argv) > 2 else state_file.with_name("keeper.json")
    try:
        state_file.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # a full disk: the keeper runs on memory until it can write
    keeper = Keeper(state_file, config_file, lambda: childutils.getRPCInterface(os.environ))
    if any(d.get("kind") == "sentinel" for d in keeper.config().get("dependencies", {}).values()):
        # The Sentinel probe's client, imported now rather than at the first broker failover:
        # the listener's memory is then what it needs in a fault, not a step at the first one.
        import airscale.runtime.broker  # noqa: F401
        import redis  # noqa: F401
    threading.Thread(target=keeper.run, name="keeper", daemon=True).start()
    while True:
        childutils.listener.wait(sys.stdin, sys.stdout)
        keeper.wake.set()  # an exit or a fatal start: look now rather than at the next pass
        childutils.listener.ok(sys.stdout)


if __name__ == "__main__":
    main()
