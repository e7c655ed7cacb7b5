"""Liveness: a component whose process exists but no longer does its work is killed, so that
the restart listener starts it again.

supervisord only knows that a process exists. Airflow users report the failures it cannot see:
schedulers that stall while their health check passes, api-servers that stop answering,
workers that take no task while their process lives; a hung disk or a SIGSTOP looks the same.
Each pass (every `PASS_SECONDS`) looks for a sign of life of every RUNNING component it can
judge:

- scheduler, dag-processor, triggerer: their job-table heartbeat (its age is how long ago the
  component was last alive);
- api-server: any HTTP answer of /api/v2/monitor/health within `HTTP_TIMEOUT` (each instance at
  its own port; the last one answering is spared while the others are silent,
  `spare_api_servers`); HAProxy in front of them: its own statistics page;
- worker: an answer to a Celery ping;
- postgres, pgbouncer, redis (embedded, not under Patroni): an answer to the restart
  listener's credential-less probe.

`judge` (pure) kills a component silent for `ha.liveness_timeout` seconds, counted from the
newest of: its last sign of life, its start, and the return of the dependency its sign of life
travels through; one that has not shown life since it started gets `START_FACTOR` times that. While the database (heartbeats) or the broker (pings) does not answer, silence
is theirs: nothing that depends on them is judged, and when they answer again everybody gets a
full timeout to show life. A kill is SIGKILL of the process tree (`procs.kill_tree`: SIGKILL
ends a stopped process too); the restart listener counts and restarts the component.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from airscale.runtime.component import BROKER, DATABASE, Component

PASS_SECONDS = 10.0
# A component that has shown no life since it started gets this many timeouts: on a loaded
# machine an api-server can take more than a minute to start, and killing it then would only
# start the same slow start again, for ever (what Kubernetes' startupProbe exists for).
START_FACTOR = 3
HTTP_TIMEOUT = 5.0
JOB_KINDS = ("scheduler", "dag-processor", "triggerer")
PROBED_KINDS = {"postgres": "postgres", "pgbouncer": "postgres", "redis": "redis"}

log = logging.getLogger("airscale.runtime.liveness")


@dataclass(frozen=True)
class Seen:
    """One component in one pass: when it started, and its newest sign of life (None: none
    seen yet, or it cannot be judged now because `through` does not answer)."""

    started: float
    alive_at: float | None
    through: str | None = None  # the dependency its sign of life travels through


@dataclass(frozen=True)
class Memory:
    """What the daemon carries from pass to pass."""

    alive_at: dict[str, float] = field(default_factory=dict)  # newest sign of life by component
    down: frozenset[str] = frozenset()  # dependencies that did not answer at the last pass
    back_at: dict[str, float] = field(default_factory=dict)  # when each answered again
    # When this daemon started watching: silence before it is unknown, not evidence. Without
    # it, a liveness daemon restarted (by `up`, when the spec file changed) killed an
    # api-server that missed its first probe on a busy host, as silent since its start.
    watching_since: float = 0.0


def judge(now: float, seen: Mapping[str, Seen], down: set[str], memory: Memory,
          timeout: float) -> tuple[Memory, list[str]]:
    """The components to kill now (pure), and the memory for the next pass."""
    back_at = dict(memory.back_at)
    for dep in memory.down - down:
        back_at[dep] = now
    alive_at: dict[str, float] = {}
    kills = []
    for name, s in seen.items():
        last = max(filter(None, (s.alive_at, memory.alive_at.get(name), s.started, memory.watching_since)))
        alive_at[name] = last
        if s.through is not None and s.through in down:
            continue  # its sign of life cannot reach us: not its fault
        since = max(last, back_at.get(s.through, 0.0)) if s.through else last
        allowed = timeout if last > s.started else START_FACTOR * timeout
        if now - since >= allowed:
            kills.append(name)
    return Memory(alive_at, frozenset(down), back_at, memory.watching_since), kills


def spare_api_servers(kills: list[str], instances: list[str], now: float, answered: Mapping[str, float | None],
                      alive_at: Mapping[str, float], timeout: float) -> list[str]:
    """The kills without the api-server instances that must be spared (pure). With two or more
    instances behind HAProxy, an instance is killed for silence only while another one answered
    within `timeout`: when none answers, they are most likely starved together (a machine too
    loaded to answer a health check in time; measured here at a load of 30 on 2 cores, where
    killing the one left made a slow service no service), so each gets START_FACTOR timeouts of
    silence before it is killed anyway (a real hang of all of them still ends).

    answered: when each instance answered in this pass (None: it did not); a start is no answer
    (an instance just restarted after a crash does not serve yet). alive_at: the memory's newest
    sign of life or start, from which silence is counted."""
    if len(instances) < 2:
        return kills
    out = []
    for name in kills:
        if name not in instances:
            out.append(name)
            continue
        others = [answered.get(o) for o in instances if o != name]
        other_answers = any(a is not None and now - a < timeout for a in others)
        silent = now - alive_at.get(name, now)
        if other_answers or silent >= START_FACTOR * timeout:
            out.append(name)
    return out


# -- observation (I/O) ----------------------------------------------------------------------
def observe(cluster, comps: list[Component], infos: Mapping[str, Mapping], down: set[str],
            now: float) -> dict[str, Seen]:
    """The newest sign of life of each RUNNING component that liveness judges. A read that
    fails (the database refuses logins, the broker's control channel errs) adds its dependency
    to `down` for this pass: what it would have shown cannot be judged."""
    from airscale.runtime import health
    from airscale.runtime.restart_listener import probe

    spec = cluster.spec
    running = [c for c in comps if infos.get(c.name, {}).get("statename") == "RUNNING"]
    started = {c.name: float(infos[c.name].get("start") or now) for c in running}
    seen: dict[str, Seen] = {}
    secrets = cluster.secrets()
    jobs = [c for c in running if c.kind in JOB_KINDS]
    if jobs:
        beats = {}
        if DATABASE not in down:
            try:
                beats = health.job_heartbeats(spec, secrets)
            except Exception:  # noqa: BLE001 - a refused login, too many connections
                down.add(DATABASE)
        for c in jobs:
            age = beats.get((health.component_hostname(c.name), health.JOB_TYPES[c.kind]), (None, None))[1]
            seen[c.name] = Seen(started[c.name], now - age if age is not None else None, DATABASE)
    workers = [c for c in running if c.kind == "worker"]
    if workers:
        pings: set[str] = set()
        if BROKER not in down:
            try:
                pings = _pings(spec, secrets)
            except Exception:  # noqa: BLE001 - the control channel failed, not the workers
                down.add(BROKER)
        for c in workers:
            seen[c.name] = Seen(started[c.name], now if c.name in pings else None, BROKER)
    for c in running:
        if c.kind in ("api-server", "api-proxy"):
            # An instance at its own port; HAProxy at its statistics page, which HAProxy serves
            # itself (through the api port, slow instances would make HAProxy look hung).
            seen[c.name] = Seen(started[c.name], now if _answers_http(_http_url(spec, c)) else None)
        elif c.kind in PROBED_KINDS and not (c.kind == "postgres" and spec.ha.database.enabled):
            host, port = _address(spec, c)
            seen[c.name] = Seen(started[c.name], now if probe(PROBED_KINDS[c.kind], host, port) else None)
    return seen


def _pings(spec, secrets, timeout: float = 2.0) -> set[str]:
    """Workers that answered a Celery ping; an error of the broker raises (not 'nobody')."""
    from airscale.runtime.broker import celery_app

    app = celery_app(spec, secrets)
    try:
        replies = app.control.ping(timeout=timeout)
    finally:
        app.close()
    return {node.split("@", 1)[0] for reply in replies for node in reply}


def _http_url(spec, c: Component) -> str:
    from airscale.runtime import api_servers

    if c.kind == "api-proxy":
        return f"{api_servers.stats_url(spec)}/stats;csv"
    return f"{api_servers.instance_url(spec, c.name)}{api_servers.HEALTH_PATH}"


def _answers_http(url: str) -> bool:
    import httpx

    try:
        httpx.get(url, timeout=HTTP_TIMEOUT)
        return True
    except httpx.HTTPError:
        return False


def _address(spec, c: Component) -> tuple[str, int]:
    from airscale.runtime.broker import node_index

    if c.kind == "redis":  # `redis`, or with ha.broker also `redis-2`
        return spec.client_host, spec.ports.redis_node(node_index(c.name))
    return spec.client_host, {"postgres": spec.ports.postgres, "pgbouncer": spec.ports.pgbouncer}[c.kind]


def dependencies_down(spec, comps: list[Component]) -> set[str]:
    """The dependencies (database, broker) that do not answer the restart listener's probe."""
    from airscale.runtime.restart_listener import keeper_config, probe_dependency

    deps = keeper_config(spec, comps)["dependencies"]
    return {name for name, d in deps.items() if not probe_dependency(d)}


def run(spec, clock=time.time, sleep=time.sleep) -> None:
    from airscale.runtime.cluster import Cluster
    from airscale.runtime.procs import kill_tree

    # The runtime's core is what liveness judges: capabilities' components (Patroni, etcd,
    # monitoring) are left to their own supervision.
    cluster = Cluster(spec, ())
    timeout = float(spec.ha.liveness_timeout)
    memory = Memory(watching_since=clock())
    log.info("killing components silent for %.0f s (checked every %.0f s)", timeout, PASS_SECONDS)
    while True:
        sleep(PASS_SECONDS)
        try:
            comps = cluster.components()
            infos = cluster.supervisor.infos()
            down = dependencies_down(spec, comps)
            now = clock()
            seen = observe(cluster, comps, infos, down, now)
            memory, kills = judge(now, seen, down, memory, timeout)
            kills = spare_api_servers(kills, [c.name for c in comps if c.kind == "api-server"], now,
                                      {n: x.alive_at for n, x in seen.items()}, memory.alive_at, timeout)
        except Exception:  # noqa: BLE001 - logged; the next pass reads everything again
            log.exception("liveness pass failed")
            continue
        for name in kills:
            pid = infos.get(name, {}).get("pid")
            if not pid:
                continue
            silent = now - memory.alive_at.get(name, now)
            killed = kill_tree(int(pid), cluster.layout.forkserver_socket)
            log.warning("%s: no sign of life for %.0f s (pid %s hung?): killed %d process(es); "
                        "the restart listener starts it again", name, silent, pid, len(killed))
            memory.alive_at.pop(name, None)


def main(argv: list[str] | None = None) -> int:
    from airscale.runtime.daemon import spec_daemon

    return spec_daemon(__doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    sys.exit(main())
