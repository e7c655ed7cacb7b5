"""What each process of a cluster read when it started, and what `up` does when that changed.

A component's inputs are what it reads once, at start: its supervisord program (command,
environment, stop signal and grace time) and the configuration files it names
(`Component.reads`). `fingerprint` turns them into digests: one per file and, for files of
`key = value` lines (airflow.cfg, PostgreSQL's and PgBouncer's), one per key, so that a reason
names the setting that changed without its value (airflow.cfg holds passwords) being kept.

`up` records a component's fingerprint when it (re)starts it (`state/inputs.json`, 0600); the
next `up` compares the record with what the files say now and plans (`plan_changes`, pure):
reload what can read its files again (SIGHUP), restart the rest in a rolling order, start what
is new, stop what the spec no longer has. `status` reads the same comparison ("restart
pending"). A process the restart listener started again after a file changed read the new file:
`as_running` credits it by the start time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from airscale.runtime.component import Component

Fingerprint = dict  # {"program", "command", "env": digest, "files": {path: {"sha", "keys", "mtime"}}}

RESTART, RELOAD, START, STOP = "restart", "reload", "start", "stop"

# The rolling order of restarts: one scheduler at a time first (the others keep scheduling),
# then the api-server (tasks' Execution API calls retry across its gap), the dag-processor and
# triggerer, the fork server before the workers it forks, then the workers one at a time.
ROLLING_ORDER = ("scheduler", "api-server", "dag-processor", "triggerer", "worker-forkserver", "worker")
# Restarted last, after an announcement: every other component loses its connections to them.
DATA_STORES = ("pgbouncer", "redis", "sentinel", "postgres", "patroni", "etcd")

# Keys a reload does not apply: the program must restart (PostgreSQL's `postmaster` context
# settings among those airscale writes or a user sets through tuning.postgres; PgBouncer's
# listening address).
RESTART_ONLY_KEYS = {
    "postgres": frozenset({
        "listen_addresses", "port", "max_connections", "shared_buffers", "max_worker_processes",
        "max_wal_senders", "max_replication_slots", "wal_level", "wal_buffers", "huge_pages",
        "max_prepared_transactions", "max_locks_per_transaction", "superuser_reserved_connections",
        "shared_preload_libraries", "unix_socket_directories", "logging_collector",
        "autovacuum_max_workers", "track_activity_query_size", "max_files_per_process",
    }),
    "pgbouncer": frozenset({"pgbouncer.listen_addr", "pgbouncer.listen_port", "pgbouncer.unix_socket_dir"}),
}


@dataclass(frozen=True)
class Change:
    component: str
    action: str  # restart | reload | start | stop
    reason: str

    def describe(self) -> str:
        verb = {RESTART: "restart", RELOAD: "reload", START: "start", STOP: "stop"}[self.action]
        return f"{verb} {self.component}: {self.reason}"


# -- fingerprints (pure) ----------------------------------------------------------------------
def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def parse_keys(text: str) -> dict[str, str]:
    """`key = value` lines, under `[section]` headers when there are any (`section.key`), to the
    digest of their value. Comments and other lines are left out (they are in the file digest)."""
    out: dict[str, str] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        if "=" in line:
            key, value = line.split("=", 1)
            name = f"{section}.{key.strip()}" if section else key.strip()
            out[name] = digest(value.strip().encode())
    return out


def file_inputs(path: Path, data: bytes | None, mtime: float | None) -> dict:
    """A file's part of a fingerprint; a missing file (data None) is an input too."""
    keyed = path.suffix in (".cfg", ".conf", ".ini") and data is not None
    keys = parse_keys(data.decode(errors="replace")) if keyed else {}
    return {"sha": digest(data) if data is not None else None, "keys": keys, "mtime": mtime}


def fingerprint(component: Component, program: Mapping[str, str],
                files: Mapping[Path, tuple[bytes | None, float | None]]) -> Fingerprint:
    """The inputs of `component`: `program` is its supervisord section (rendered, or read from
    supervisord.conf), `files` the content and mtime of each file it reads (`read_files`)."""
    text = "\n".join(f"{k}={v}" for k, v in sorted(program.items()))
    return {
        "program": digest(text.encode()),
        "command": digest(program.get("command", "").encode()),
        "env": digest(program.get("environment", "").encode()),
        "files": {str(p): file_inputs(p, *files.get(p, (None, None))) for p in component.reads},
    }


def read_files(paths: Collection[Path]) -> dict[Path, tuple[bytes | None, float | None]]:
    """Content and mtime of each file (None, None when it does not exist)."""
    out: dict[Path, tuple[bytes | None, float | None]] = {}
    for p in paths:
        try:
            out[p] = (p.read_bytes(), p.stat().st_mtime)
        except (FileNotFoundError, NotADirectoryError):
            out[p] = (None, None)
    return out


# -- comparisons (pure) ---------------------------------------------------------------------------
def same_file(a: dict | None, b: dict | None) -> bool:
    return (a or {}).get("sha") == (b or {}).get("sha")


def as_running(recorded: Fingerprint, current: Fingerprint, started_at: float | None) -> Fingerprint:
    """What a process started at `started_at` runs: the recorded inputs, except files last
    written before it started, which it read as they are now (the restart listener or
    `airscale start` started it after the change). Its program is the one supervisord had
    when the group was added, which only `up` replaces, so that part stays as recorded."""
    if started_at is None:
        return recorded
    files = dict(recorded.get("files", {}))
    for path, now in current.get("files", {}).items():
        mtime = now.get("mtime")
        if mtime is not None and mtime < started_at:
            files[path] = now
    return {**recorded, "files": files}


def changed_inputs(old: Fingerprint, new: Fingerprint) -> list[str]:
    """What differs between two fingerprints, as short phrases (no values)."""
    out: list[str] = []
    if old.get("command") != new.get("command"):
        out.append("command")
    if old.get("env") != new.get("env"):
        out.append("environment")
    if old.get("program") != new.get("program") and not out:
        out.append("supervisor settings")
    old_files, new_files = old.get("files", {}), new.get("files", {})
    for path in sorted(set(old_files) | set(new_files)):
        a, b = old_files.get(path), new_files.get(path)
        if same_file(a, b):
            continue
        name = Path(path).name
        if a is None or b is None or a.get("sha") is None or b.get("sha") is None:
            state = "new" if a is None else "gone" if b is None or b.get("sha") is None else "created"
            out.append(f"{name} ({state})")
            continue
        ka, kb = a.get("keys", {}), b.get("keys", {})
        keys = sorted(k for k in set(ka) | set(kb) if ka.get(k) != kb.get(k))
        out.append(f"{name}: {', '.join(keys)}" if keys else name)
    return out


def changed_keys(old: Fingerprint, new: Fingerprint) -> set[str]:
    out: set[str] = set()
    for path, b in new.get("files", {}).items():
        a = old.get("files", {}).get(path) or {}
        ka, kb = a.get("keys", {}), b.get("keys", {})
        out |= {k for k in set(ka) | set(kb) if ka.get(k) != kb.get(k)}
    return out


def action_for(component: Component, old: Fingerprint, new: Fingerprint) -> str | None:
    """RESTART, RELOAD or None (nothing changed) for a running component (pure)."""
    if not changed_inputs(old, new):
        return None
    program_same = old.get("program") == new.get("program")
    restart_only = RESTART_ONLY_KEYS.get(component.kind, frozenset())
    if component.reload_signal and program_same and not (changed_keys(old, new) & restart_only):
        return RELOAD
    return RESTART


def rank(component: Component) -> int:
    """Where a component's restart comes in the rolling order (pure)."""
    if component.kind in ROLLING_ORDER:
        return ROLLING_ORDER.index(component.kind)
    if component.kind in DATA_STORES:
        return len(ROLLING_ORDER) + 1 + DATA_STORES.index(component.kind)
    return len(ROLLING_ORDER)  # monitoring, the autoscaler and other daemons: after the workers


def plan_changes(comps: Sequence[Component], old: Mapping[str, Fingerprint], new: Mapping[str, Fingerprint],
                 running: Collection[str], wanted: Collection[str],
                 changed_programs: Collection[str] = ()) -> list[Change]:
    """The changes that bring the running cluster to `new` (pure).

    old: the recorded inputs of each component (as running, `as_running`); new: what they are
    now; running: names of the processes up now (also ones the spec no longer has); wanted:
    the components `up` keeps running (min_workers of each queue, every autostart component).
    A running component without a record is left alone (nothing says what it read) unless
    supervisord's section of it changed (`changed_programs`): that takes a restart to apply.
    Order: reloads first (no gap), restarts in the rolling order, stops, then starts.
    """
    by_name = {c.name: c for c in comps}
    reloads: list[Change] = []
    restarts: list[tuple[int, int, Change]] = []
    for i, c in enumerate(comps):
        if c.name not in running or c.name not in new:
            continue
        if c.name not in old:
            if c.name in changed_programs:
                restarts.append((rank(c), i, Change(c.name, RESTART, "its program changed (no record of "
                                                    "the inputs it started with)")))
            continue
        action = action_for(c, old[c.name], new[c.name])
        if action is None:
            continue
        change = Change(c.name, action, "; ".join(changed_inputs(old[c.name], new[c.name])) + " changed")
        if action == RELOAD:
            reloads.append(change)
        else:
            restarts.append((rank(c), i, change))
    stops = [Change(n, STOP, "no longer in the spec") for n in sorted(running) if n not in by_name]
    starts = [Change(c.name, START, "new in the spec" if c.name not in old else "not running")
              for c in comps if c.name in wanted and c.name not in running]
    return reloads + [ch for _, _, ch in sorted(restarts, key=lambda t: t[:2])] + stops + starts


def is_data_store(component: Component) -> bool:
    return component.kind in DATA_STORES


# -- pools (pure) -----------------------------------------------------------------------------------
DEFAULT_POOL = "default_pool"


@dataclass(frozen=True)
class PoolChange:
    pool: str
    action: str  # create | resize | delete | keep
    slots: int | None
    reason: str

    def describe(self) -> str:
        if self.action == "create":
            return f"create pool {self.pool} with {self.slots} slots"
        if self.action == "resize":
            return f"resize pool {self.pool}: {self.reason}"
        if self.action == "delete":
            return f"delete pool {self.pool}: {self.reason}"
        return f"keep pool {self.pool}: {self.reason}"


def desired_pools(spec_pools: Mapping[str, int], planned_default: int | None) -> dict[str, int]:
    """The pools `up` keeps: the spec's, and default_pool at the plan's size unless the spec
    sizes it itself (pure)."""
    out = dict(spec_pools)
    if planned_default is not None:
        out.setdefault(DEFAULT_POOL, planned_default)
    return out


def plan_pools(desired: Mapping[str, int], managed_before: Collection[str], current: Mapping[str, int],
               in_use: Mapping[str, int]) -> list[PoolChange]:
    """Pool changes (pure). current: slots of every pool in the database; managed_before: the
    pools an earlier `up` kept from the spec; in_use: unfinished task instances per pool. A
    pool never declared in the spec (made in the UI) is not touched, default_pool never deleted."""
    out: list[PoolChange] = []
    for name, slots in desired.items():
        if name not in current:
            out.append(PoolChange(name, "create", slots, "declared in the spec"))
        elif current[name] != slots:
            out.append(PoolChange(name, "resize", slots, f"{current[name]} -> {slots} slots"))
    for name in sorted(set(managed_before) - set(desired) - {DEFAULT_POOL}):
        if name not in current:
            continue
        busy = in_use.get(name, 0)
        if busy:
            out.append(PoolChange(name, "keep", None, f"removed from the spec, but {busy} unfinished task "
                                  "instance(s) use it; `airscale up` deletes it once they are done"))
        else:
            out.append(PoolChange(name, "delete", None, "removed from the spec, no unfinished task uses it"))
    return out
