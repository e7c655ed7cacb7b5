"""`up` on a running cluster: converge it to the spec without losing work (the I/O side of
airscale.runtime.inputs, whose `plan_changes` decides).

Configuration files are written first, then supervisord rereads its file: new programs are
added, changed ones of stopped processes replaced at once; running ones are left to the plan,
which stops each gracefully (a worker drains: the existing stop path), replaces its program and
starts it again, one at a time, waiting until it is healthy (a scheduler: until it heartbeats)
before the next. Reloads are SIGHUP through supervisord. A component's record in
`state/inputs.json` is updated as soon as it runs its new inputs, so an `up` that fails midway
leaves a record that says what still runs old inputs (`airscale status`: restart pending).

Pools are kept with SQL on the metadata database, not with `airflow pools set`: each Airflow
CLI call imports Airflow (seconds of CPU on a small host, per pool), while the SQL is one
short transaction that also reads whether an unfinished task uses a pool being removed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from airscale.runtime import health, inputs
from airscale.runtime.component import Component
from airscale.runtime.inputs import Fingerprint, PoolChange
from airscale.runtime.layout import Layout
from airscale.runtime.secrets import Secrets, write_private
from airscale.runtime.supervisor import program_section, programs_on_disk
from airscale.spec import Spec

ACTIVE = ("RUNNING", "STARTING", "BACKOFF")
UNFINISHED = ("scheduled", "queued", "running", "deferred", "up_for_retry", "up_for_reschedule", "restarting")


@dataclass
class Record:
    """state/inputs.json: each component's inputs when it last (re)started, and the pools an
    `up` kept from the spec (only those are ever deleted)."""

    components: dict[str, Fingerprint] = field(default_factory=dict)
    pools: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, layout: Layout) -> Record:
        try:
            raw = json.loads(layout.inputs_file.read_text())
        except (FileNotFoundError, ValueError):
            return cls()
        return cls(dict(raw.get("components", {})), list(raw.get("pools", [])))

    def save(self, layout: Layout) -> None:
        # Digests only, but of files that hold secrets: private like them.
        tmp = layout.inputs_file.with_suffix(".tmp")
        write_private(tmp, json.dumps({"components": self.components, "pools": self.pools}, indent=1))
        os.replace(tmp, layout.inputs_file)


def current_inputs(layout: Layout, comps: Sequence[Component], on_disk: bool = False) -> dict[str, Fingerprint]:
    """Each component's inputs as the files say now; its program as the spec renders it, or
    with `on_disk` as supervisord.conf has it (components not in it are left out)."""
    files = inputs.read_files({p for c in comps for p in c.reads})
    if on_disk:
        programs = programs_on_disk(layout)
        return {c.name: inputs.fingerprint(c, programs[c.name], files) for c in comps if c.name in programs}
    return {c.name: inputs.fingerprint(c, program_section(layout, c), files) for c in comps}


def running_inputs(record: Record, now: Mapping[str, Fingerprint], infos: Mapping[str, dict]) -> dict[str, Fingerprint]:
    """What each running, recorded component runs (`inputs.as_running`)."""
    out = {}
    for name, old in record.components.items():
        info = infos.get(name, {})
        if name in now and info.get("statename") in ACTIVE:
            out[name] = inputs.as_running(old, now[name], info.get("start") or None)
        else:
            out[name] = old
    return out


def pending(layout: Layout, comps: Sequence[Component], infos: Mapping[str, dict]) -> dict[str, str]:
    """Running components whose recorded inputs differ from the files now: name -> "restart
    pending (...)" or "reload pending (...)"."""
    record = Record.load(layout)
    now = current_inputs(layout, comps, on_disk=True)
    old = running_inputs(record, now, infos)
    out = {}
    for c in comps:
        if c.name in old and c.name in now and infos.get(c.name, {}).get("statename") in ACTIVE:
            action = inputs.action_for(c, old[c.name], now[c.name])
            if action:
                out[c.name] = f"{action} pending ({'; '.join(inputs.changed_inputs(old[c.name], now[c.name]))} changed)"
    return out


# -- snapshots: `up --dry-run` writes the files to compare them, then puts the old ones back ------
# Only configuration that `up` writes is put back: never a database's, Redis's or Prometheus's
# own files, nor what running processes write meanwhile (restart counts, fork server records).
SKIPPED_DIRS = {"logs", "prometheus-data", "alertmanager-data", "appendonlydir", "dags", "tasks", "forkserver"}
CONFIG_SUFFIXES = {".conf", ".cfg", ".ini", ".yml", ".yaml", ".json", ".env", ".py", ".txt", ""}
NOT_CONFIG = {"restarts.json", "supervisord.pid", "postmaster.pid", "postmaster.opts", "alerts.jsonl"}


def snapshot(root: Path) -> dict[Path, tuple[bytes, os.stat_result]]:
    """The generated configuration files under the data folder, with their modes and times."""
    out: dict[Path, tuple[bytes, os.stat_result]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if "PG_VERSION" in filenames:  # a PostgreSQL data folder: its *.conf only, nothing below
            dirnames[:] = []
            filenames = [f for f in filenames if f.endswith(".conf")]
        dirnames[:] = [d for d in dirnames if d not in SKIPPED_DIRS]
        for f in filenames:
            p = Path(dirpath) / f
            if f in NOT_CONFIG or f.startswith("restarts") or p.suffix not in CONFIG_SUFFIXES:
                continue
            try:
                st = p.lstat()
                if p.is_file() and not p.is_symlink() and st.st_size < 1_000_000:
                    out[p] = (p.read_bytes(), st)
            except OSError:
                continue
    return out


def restore(root: Path, before: Mapping[Path, tuple[bytes, os.stat_result]]) -> None:
    """Put back every snapshotted file that changed, delete files that were not there."""
    after = snapshot(root)
    for p in set(after) - set(before):
        p.unlink(missing_ok=True)
    for p, (data, st) in before.items():
        now = after.get(p)
        if now is not None and now[0] == data:
            continue
        p.write_bytes(data)
        os.chmod(p, st.st_mode & 0o7777)
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


# -- pools ---------------------------------------------------------------------------------------------
def planned_default_pool(spec: Spec, layout: Layout, secrets: Secrets, capabilities) -> int | None:
    from airscale.runtime.airflow_config import merged_settings

    value = merged_settings(spec, layout, secrets, capabilities).get("core", {}).get("default_pool_task_slot_count")
    return int(value) if value is not None else None


def plan_pools(spec: Spec, secrets: Secrets, record: Record, planned_default: int | None) -> list[PoolChange]:
    desired = inputs.desired_pools(spec.pools, planned_default)
    removed = sorted(set(record.pools) - set(desired))
    with health.db_connect(spec, secrets) as conn, conn.cursor() as cur:
        cur.execute("SELECT pool, slots FROM slot_pool")
        current = {name: slots for name, slots in cur.fetchall()}
        in_use = {}
        if removed:
            cur.execute("SELECT pool, count(*) FROM task_instance WHERE pool = ANY(%s) "
                        "AND (state IS NULL OR state = ANY(%s)) GROUP BY pool", (removed, list(UNFINISHED)))
            in_use = dict(cur.fetchall())
    conn.close()
    return inputs.plan_pools(desired, record.pools, current, in_use)


def apply_pools(spec: Spec, secrets: Secrets, changes: Sequence[PoolChange]) -> None:
    with health.db_connect(spec, secrets) as conn, conn.cursor() as cur:
        for ch in changes:
            if ch.action == "create":
                cur.execute("INSERT INTO slot_pool (pool, slots, description, include_deferred) "
                            "VALUES (%s, %s, %s, false)", (ch.pool, ch.slots, "declared in the airscale spec"))
            elif ch.action == "resize":
                cur.execute("UPDATE slot_pool SET slots = %s WHERE pool = %s", (ch.slots, ch.pool))
            elif ch.action == "delete":
                # Checked again in the same statement: a task may have taken the pool meanwhile.
                cur.execute("DELETE FROM slot_pool WHERE pool = %s AND NOT EXISTS (SELECT 1 FROM task_instance "
                            "WHERE pool = %s AND (state IS NULL OR state = ANY(%s)))",
                            (ch.pool, ch.pool, list(UNFINISHED)))
    conn.close()
