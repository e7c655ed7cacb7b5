"""Parse DAG files when they change, not by re-reading the folder (dag-processor accelerator).

Stock Airflow notices an edited file by comparing modification times once its queue is empty,
and a new or deleted file only when it lists the bundle again (`[dag_processor]
refresh_interval`); every file is also re-parsed every `min_file_process_interval`. With a
large folder that re-parse is the dag-processor's whole cost while nothing changes (1,000
files every 60 s kept it at 37 % of a core).

Here a thread of the dag-processor's manager watches the local DAG bundles' folders (the
`watchfiles` library: inotify on Linux) and, at the manager's next loop (at most a second):
- an edited DAG file the manager has parsed before goes to the front of its queue, as a
  priority parse request from the UI does;
- a file added, deleted or moved, or a changed `.airflowignore`, makes the manager list its
  bundle again at once: new files are queued by Airflow's own listing (which applies
  `.airflowignore`), and the DAGs of deleted files are deactivated as Airflow does.

Airflow stores a file's parse only if the DAG's last write is older than `[core]
min_serialized_dag_update_interval` (30 s): an edit saved within that time of the previous one
would be parsed and not stored, and with a long re-parse interval nothing would parse it again.
So a file edited again within that time is queued once more when the interval has passed
(`Requeue`). The manager's own scan of modification times, redundant with the watch, runs at
most every `SCAN_EVERY_S` instead of every loop (it stats every file of the folder), and only
while the watch runs.

So the planner can make `min_file_process_interval` long (airscale.tuning.planner): it is
then only how often a file is re-parsed *unchanged*, which matters only for DAGs built from
something outside their file (a Variable, a config file, an API). Bundles with versions (git)
are not watched: their files change by a refresh Airflow already drives. If the watch ends
(no inotify watches left, an error of watchfiles), it logs a warning once and the manager
behaves as stock Airflow: its scan of modification times runs at every loop again.

Turned on by `[airscale] dag_folder_watch` (airscale.runtime.airflow_entry).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from airscale.spec import dagfiles

log = logging.getLogger(__name__)

IGNORE_FILE = ".airflowignore"
DEBOUNCE_MS = 200  # an editor's write, rename and chmod come as one batch
SCAN_EVERY_S = 30.0  # the manager's scan of every file's mtime, while the watch runs


@dataclass
class Requeue:
    """When to queue an edited file once more: Airflow drops a parse whose DAG was stored less
    than `throttle_s` ago, so an edit that follows the previous one that closely is parsed
    again when the throttle has passed (pure; the clock passed in)."""

    throttle_s: float
    queued_at: dict = field(default_factory=dict)  # file -> when it was last queued
    deferred: dict = field(default_factory=dict)  # file -> when to queue it again

    def edited(self, key, now: float) -> None:
        last = self.queued_at.get(key)
        if last is not None and now - last < self.throttle_s:
            self.deferred[key] = now + self.throttle_s
        self.queued_at[key] = now

    def due(self, now: float) -> list:
        keys = sorted(k for k, t in self.deferred.items() if t <= now)
        for k in keys:
            del self.deferred[k]
            self.queued_at[k] = now
        return keys


@dataclass
class Pending:
    """What the watch saw since the manager last looked."""

    edited: set[tuple[str, Path]] = field(default_factory=set)  # (bundle, path relative to it)
    relist: set[str] = field(default_factory=set)  # bundles to list again


def classify(changes: set[tuple[int, str]], bundles: dict[str, Path], into: Pending) -> None:
    """Sort watchfiles' (change, path) pairs into files to parse and bundles to list again
    (pure). Change values are watchfiles.Change's: 1 added, 2 modified, 3 deleted. What is a DAG
    file is airscale.spec.dagfiles' rule, the one the planner counts by."""
    for change, raw in changes:
        path = Path(raw)
        for name, root in bundles.items():
            try:
                rel = path.relative_to(root)
            except ValueError:
                continue
            if path.name == IGNORE_FILE:  # what is a DAG file changed
                into.relist.add(name)
            elif dagfiles.is_dag_file(rel):
                if int(change) != 2:
                    into.relist.add(name)
                if int(change) != 3:
                    into.edited.add((name, rel))
            elif int(change) != 2 and not dagfiles.skipped_path(rel):
                # maybe a folder added, deleted or moved (a deleted path's kind is unknown)
                into.relist.add(name)
            break


class Watch:
    def __init__(self, bundles: dict[str, Path]):
        self.bundles = bundles
        self._lock = threading.Lock()
        self._pending = Pending()
        self._stop = threading.Event()
        self._ended = threading.Event()  # set when the thread's loop is over, however it ended

    @property
    def running(self) -> bool:
        """False once the watch ended: the manager's own scan must not wait on it any more."""
        return not self._ended.is_set()

    def start(self) -> threading.Thread:
        t = threading.Thread(target=self._run, name="airscale-dag-watch", daemon=True)
        t.start()
        return t

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        error: Exception | None = None
        try:
            from watchfiles import watch

            for changes in watch(*self.bundles.values(), debounce=DEBOUNCE_MS, stop_event=self._stop,
                                 raise_interrupt=False, ignore_permission_denied=True):
                with self._lock:
                    classify(changes, self.bundles, self._pending)
        except Exception as e:  # the thread ends; the manager goes on as stock Airflow (listing, mtimes)
            error = e
        finally:
            self._ended.set()
        if not self._stop.is_set():
            log.warning("airscale: the watch of the DAG folders ended%s; changes are found by Airflow's "
                        "polling, its scan of modification times at every loop",
                        f" ({error!r})" if error else "", exc_info=error)

    def take(self) -> Pending:
        with self._lock:
            out, self._pending = self._pending, Pending()
        return out


def install() -> None:
    """Patch Airflow's DagFileProcessorManager: start the watch once the bundles are loaded,
    and hand its findings over where the manager takes priority parse requests."""
    from airflow.configuration import conf
    from airflow.dag_processing.manager import DagFileInfo, DagFileProcessorManager

    original_prepare = DagFileProcessorManager.prepare_bundles
    original_requested = DagFileProcessorManager._queue_requested_files_for_parsing
    original_scan = DagFileProcessorManager.prepare_file_queue
    throttle_s = conf.getfloat("core", "min_serialized_dag_update_interval", fallback=30.0)

    def prepare_bundles(self) -> None:
        original_prepare(self)
        folders = {b.name: Path(b.path) for b in self._dag_bundles
                   if not b.supports_versioning and b.path is not None and Path(b.path).is_dir()}
        if folders:
            self._airscale_watch = Watch(folders)
            self._airscale_requeue = Requeue(throttle_s + 1.0)
            self._airscale_scanned = 0.0
            self._airscale_watch.start()
            self.log.info("airscale: parsing DAG files on change in %s", ", ".join(str(p) for p in folders.values()))

    def queue_requested(self) -> None:
        original_requested(self)
        watch = getattr(self, "_airscale_watch", None)
        if watch is None:
            return
        pending = watch.take()
        now = time.monotonic()
        known = {f.presence_key for f in self._file_stats}
        edited = [k for k in sorted(pending.edited) if k in known]  # new files: Airflow's listing
        for k in edited:
            self._airscale_requeue.edited(k, now)
        keys = edited + [k for k in self._airscale_requeue.due(now) if k not in edited and k in known]
        if keys:
            self._add_files_to_queue([DagFileInfo(rel_path=rel, bundle_name=name, bundle_path=watch.bundles[name])
                                      for name, rel in keys], mode="frontprio")
        if pending.relist:
            self.request_bundle_refresh(pending.relist)

    def prepare_file_queue(self, known_files) -> None:
        # Called whenever the queue is empty (every loop of a quiet manager): a stat of every
        # file for changes the watch already reports, and the files due by the interval. Once
        # the watch ended, nothing else reports them: the scan runs at every loop, as stock.
        watch = getattr(self, "_airscale_watch", None)
        if watch is not None and watch.running:
            now = time.monotonic()
            if now - self._airscale_scanned < SCAN_EVERY_S:
                return
            self._airscale_scanned = now
        original_scan(self, known_files)

    DagFileProcessorManager.prepare_bundles = prepare_bundles
    DagFileProcessorManager._queue_requested_files_for_parsing = queue_requested
    DagFileProcessorManager.prepare_file_queue = prepare_file_queue
