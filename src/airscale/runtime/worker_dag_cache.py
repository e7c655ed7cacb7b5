"""Parse a DAG file once per Celery pool process, not once per task.

Airflow 3 runs every task in a process forked from a Celery pool process, and that process
imports the task's DAG file again (`task_runner.parse` builds a `BundleDagBag`) before it
runs one task. For a DAG of 200 tasks that is 200 operators built per task: measured 48 % of
the worker's CPU in a 200-task fan-out (py-spy, BENCHMARKS.md). Here the pool process parses
the file once, before it forks the task process (Celery's `task_prerun`), and the forked task
process takes the DAG from the memory it inherited: Airflow's own `parse` still runs (bundle
set-up, access check, DAG and task lookup, errors, its log line); only the import of the file is
skipped. The task mutates its own copy (fork), never the cached one.

An entry is used only while the file is the same (size, mtime, inode) and younger than
`max_age` seconds, so top-level code of a DAG file (a Variable read at parse time, a helper
module) is at most that old, as on a dag-processor whose `min_file_process_interval` is that
long. Only DAG bundles without versions (the dags folder) are cached; a file that fails to
parse is never cached and the task process parses it as before, reporting the error as
Airflow does. Installed on Celery workers by `airscale.runtime.celery_config` (the plan's
`[celery] celery_config_options`); `[airscale] worker_dag_cache_seconds` sets `max_age`.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_MAX_AGE = 300.0
MAX_ENTRIES = 32  # DAG files held per pool process (each holds its DAG objects in memory)


@dataclass(frozen=True)
class FileId:
    """What must not change for a cached parse to stand for the file."""

    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, path: str) -> FileId | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return cls(st.st_size, st.st_mtime_ns, st.st_ino)


@dataclass
class Entry:
    path: str  # absolute path of the DAG file
    file: FileId
    parsed_at: float  # monotonic
    bag: Any  # the BundleDagBag built in the pool process


def workload_target(payload: str) -> tuple[str, str, str | None] | None:
    """(bundle name, dag_rel_path, bundle version) of a Celery `execute_workload` message, or
    None for anything else (a callback, a message this version does not know)."""
    try:
        data = json.loads(payload)
    except (TypeError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    bundle = data.get("bundle_info") or {}
    rel = data.get("dag_rel_path")
    if not isinstance(bundle, dict) or not bundle.get("name") or not isinstance(rel, str) or "ti" not in data:
        return None
    return bundle["name"], rel, bundle.get("version")


class DagFileCache:
    """Parsed DAG files of one pool process, keyed by (bundle, relative path)."""

    def __init__(self, max_age: float = DEFAULT_MAX_AGE, max_entries: int = MAX_ENTRIES,
                 clock=time.monotonic) -> None:
        self.max_age = max_age
        self.max_entries = max_entries
        self.clock = clock
        self.entries: OrderedDict[tuple[str, str], Entry] = OrderedDict()

    def fresh(self, key: tuple[str, str], path: str | None = None) -> Entry | None:
        """The entry for `key` if the file is unchanged and the parse young enough."""
        e = self.entries.get(key)
        if e is None:
            return None
        if (path is not None and path != e.path) or self.clock() - e.parsed_at > self.max_age \
                or FileId.of(e.path) != e.file:
            del self.entries[key]
            return None
        self.entries.move_to_end(key)
        return e

    def put(self, key: tuple[str, str], entry: Entry) -> None:
        self.entries[key] = entry
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)


CACHE = DagFileCache()


def _bundle(name: str, version: str | None):
    from airflow.dag_processing.bundles.manager import DagBundlesManager

    return DagBundlesManager().get_bundle(name=name, version=version)


def warm(payload: str) -> None:
    """In the pool process, before the fork: parse the workload's DAG file unless the cache
    holds it. Any failure leaves the file to the task process, as without the cache."""
    target = workload_target(payload)
    if target is None:
        return
    name, rel, version = target
    if version is not None:
        return  # a versioned bundle (git): checked out per version by the task process
    key = (name, rel)
    try:
        bundle = _bundle(name, version)
        if getattr(bundle, "supports_versioning", False):
            return
        path = os.fspath(os.path.join(bundle.path, rel))
        if CACHE.fresh(key, path) is not None:
            return
        before = FileId.of(path)
        if before is None:
            return
        from airflow.dag_processing.dagbag import BundleDagBag

        t0 = time.monotonic()
        bag = BundleDagBag(dag_folder=path, safe_mode=False, load_op_links=False,
                           bundle_path=bundle.path, bundle_name=name)
        if bag.import_errors or not bag.dags or FileId.of(path) != before:
            return  # the task process parses it and reports what went wrong
        CACHE.put(key, Entry(path, before, CACHE.clock(), bag))
        log.info("airscale: parsed %s once for this pool process (%.0f ms, %d DAGs)",
                 rel, (time.monotonic() - t0) * 1000, len(bag.dags))
    except Exception:  # never fail a task because the cache could not help
        log.warning("airscale: DAG file cache could not parse %s; the task will", rel, exc_info=True)


def cached_parse(original):
    """`task_runner.parse` that takes the DAG file from the cache when it is fresh."""

    def parse(what, log):  # noqa: ANN001 - Airflow's signature
        # The module object Airflow's parse takes BundleDagBag from (`from ... import`).
        dagbag = importlib.import_module("airflow.dag_processing.dagbag")

        bundle = what.bundle_info
        entry = None if bundle.version is not None else CACHE.fresh((bundle.name, what.dag_rel_path))
        if entry is None or what.ti.dag_id not in entry.bag.dags:
            return original(what, log)
        real = dagbag.BundleDagBag

        def from_cache(dag_folder=None, *args, **kwargs):
            if os.fspath(dag_folder) == entry.path:
                return entry.bag
            return real(dag_folder, *args, **kwargs)

        # The task process is single-threaded here and exits after this one task.
        dagbag.BundleDagBag = from_cache
        try:
            return original(what, log)
        finally:
            dagbag.BundleDagBag = real

    parse._airscale_original = original  # type: ignore[attr-defined]
    return parse


def install(max_age: float = DEFAULT_MAX_AGE) -> None:
    """Hook the cache into this Celery worker (called from its `worker_init` signal)."""
    from celery.signals import task_prerun

    from airflow.sdk.execution_time import task_runner

    # Imported here, in the worker's main process, so that every pool process inherits them
    # instead of importing them at its first task (measured: 4 % of a fan-out's worker CPU).
    import airflow.dag_processing.bundles.manager  # noqa: F401
    import airflow.dag_processing.dagbag  # noqa: F401

    CACHE.max_age = max_age
    if not hasattr(task_runner.parse, "_airscale_original"):
        task_runner.parse = cached_parse(task_runner.parse)

    @task_prerun.connect(weak=False)
    def _warm(sender=None, args=None, **_: Any) -> None:
        if getattr(sender, "name", None) == "execute_workload" and args:
            warm(args[0])
