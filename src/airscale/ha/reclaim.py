"""Give a dead Celery worker's messages back to the queue in seconds, never a live one's.

Why: with `acks_late` (so a crash loses no message) a worker holds the messages of the tasks
it runs and of those it has taken but not started. Killed with kill -9, it leaves them
unacknowledged in Redis, and Redis gives them back only after the visibility timeout, which
must exceed the longest task (hours): measured here, two tasks of a drill stayed "queued" for
the whole visibility timeout after a worker kill. Lowering the timeout instead would start long
tasks twice, and a second start of a running task is worse than it looks: the api-server
refuses it (409), but the duplicate's Celery result lands under the same Celery task id, and
a result for a task instance that is still "running" is what the scheduler's
process_executor_events treats as "killed externally" (read in its source, Airflow 3.3.2).

How: every few seconds, if Redis holds unacknowledged messages older than `MIN_AGE_S`, ask every
worker (Celery inspect: active + reserved) which messages it holds. A message no live worker
claims belongs to a dead one and is pushed back to the head of its queue, as kombu itself does
when the visibility timeout expires. The round is skipped unless every worker the supervisor
runs answered and none is stopping (a worker in warm shutdown may not answer, and its running
tasks must not be handed out again). A redelivered message of a task that was *running* on the
dead worker is refused by the api-server (409: the task instance is not queued) and the worker
drops it (measured: the Celery task ends "succeeded", the task instance is untouched); the
heartbeat timeout then fails that try and a retry replaces it.

Lost messages: a scheduler that dies between committing task instances as "queued" and
publishing their messages (measured in the db-failover drill: the database vanished mid-loop,
19 task instances) leaves them queued with no message anywhere; the restarted scheduler's Celery
executor "adopts" them as PENDING and nothing happens until [scheduler] task_queued_timeout
(600 s). So each round also looks for task instances queued for more than `LOST_AFTER_S` whose
Celery task id is in no queue, not unacknowledged and held by no live worker, re-checks that
they are still queued, and publishes their message again, built as the scheduler builds it
(same Celery task id, so the executor that adopted them sees the result).

Tasks of a restarted worker: the tasks a killed worker was running stay "running" until the
scheduler's heartbeat timeout (`ha.task_heartbeat_timeout`, 90 s) fails and retries them. A
task instance still "running" on a worker whose process started *after* the task did cannot be
running there; each round marks such task instances' last heartbeat as long past, so the
scheduler's own heartbeat-timeout check (every 5 s) fails and retries them through its normal
path (callbacks, retries) at once. A task process that survived its worker and still runs
heartbeats again within seconds, which undoes the mark.

Run by supervisord as `python -m airscale.ha.reclaim --spec FILE` (component `reclaimer`).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

log = logging.getLogger("airscale.reclaim")

INTERVAL_S = 5.0
# Older than this, a message a worker took is in its active or reserved list (kombu records
# the delivery a few milliseconds before the worker lists it).
MIN_AGE_S = 10.0
# A queued task instance's message is published within the scheduler loop that queued it.
LOST_AFTER_S = 30.0
UNACKED = "unacked"
UNACKED_INDEX = "unacked_index"


@dataclass(frozen=True)
class Unacked:
    tag: str
    task_id: str | None
    delivered_at: float


def skip_reason(running_workers: Iterable[str], answered: Iterable[str], stopping: Iterable[str]) -> str | None:
    """Why not to decide this round (pure). Names are component names (`worker-default-1`)."""
    stopping = sorted(stopping)
    if stopping:
        return f"worker(s) stopping: {', '.join(stopping)}"
    missing = sorted(set(running_workers) - set(answered))
    if missing:
        return f"no answer from running worker(s): {', '.join(missing)}"
    return None


def orphans(unacked: Iterable[Unacked], claimed: set[str], now: float, min_age: float = MIN_AGE_S) -> list[str]:
    """Delivery tags of messages old enough that no live worker holds (pure)."""
    return [
        m.tag for m in sorted(unacked, key=lambda m: m.delivered_at)
        if now - m.delivered_at >= min_age and (m.task_id is None or m.task_id not in claimed)
    ]


def lost(queued: Mapping[str, float], seen: set[str], min_age: float = LOST_AFTER_S) -> list[str]:
    """Celery task ids of task instances queued at least `min_age` seconds (id -> age) whose
    message is nowhere: not in a queue, not unacknowledged, not held by a live worker (pure)."""
    return sorted(i for i, age in queued.items() if age >= min_age and i not in seen)


def stranded(running: Iterable[tuple[str, str, float]], worker_started: Mapping[str, float]) -> list[str]:
    """Ids of running task instances (id, hostname, started epoch) that began on a worker
    before its current process started (pid restarted since), so nothing runs them (pure).
    supervisord reports the start in whole seconds, rounded down, so a task the new process
    started is never earlier than it: no margin is needed (one host, one clock)."""
    return sorted(ti for ti, host, started in running
                  if host in worker_started and started < worker_started[host])


def claimed_ids(*replies: Mapping[str, list[dict]] | None) -> tuple[set[str], set[str]]:
    """(task ids held, node names that answered) from Celery inspect active()/reserved() replies."""
    ids: set[str] = set()
    nodes: set[str] | None = None
    for reply in replies:
        got = set((reply or {}).keys())
        nodes = got if nodes is None else nodes & got  # a node must answer every question
        for tasks in (reply or {}).values():
            ids.update(t.get("id") for t in tasks if t.get("id"))
    return ids, {n.split("@", 1)[0] for n in nodes or set()}


def read_unacked(client) -> list[Unacked]:
    out = []
    for tag, score in client.zrange(UNACKED_INDEX, 0, -1, withscores=True):
        tag = tag.decode() if isinstance(tag, bytes) else tag
        raw = client.hget(UNACKED, tag)
        task_id = None
        if raw:
            try:
                payload = json.loads(raw)[0]
                task_id = payload.get("headers", {}).get("id")
            except (ValueError, IndexError, AttributeError):
                pass
        out.append(Unacked(tag, task_id, float(score)))
    return out


def import_republish_modules() -> None:
    """Import what `Reclaimer.republish` uses (Airflow's models and Celery executor, 85 MiB) at
    start, not at the first lost message: the reclaimer's memory is then the same before and
    after a broker failover. A failure here is left to `republish`, which logs it."""
    try:
        import airflow.api_fastapi.auth.tokens  # noqa: F401
        import airflow.executors.workloads  # noqa: F401
        import airflow.models.taskinstance  # noqa: F401
        import airflow.providers.celery.executors.celery_executor_utils  # noqa: F401
        import airflow.utils.session  # noqa: F401
    except Exception:  # noqa: BLE001
        log.warning("could not import Airflow's task and executor modules at start", exc_info=True)


class Reclaimer:
    def __init__(self, spec):
        from airscale.runtime.cluster import Cluster

        # The runtime's core is enough: it reads the workers, the broker and the database.
        self.cluster = Cluster(spec, ())
        self.connect()
        self.restored = 0
        self.republished = 0
        import_republish_modules()

    def connect(self) -> None:
        """Connections to the broker (with ha.broker through the Sentinels, which a new
        connection asks again: airscale.runtime.broker)."""
        from airscale.runtime import broker

        secrets = self.cluster.secrets()
        self.app = broker.celery_app(self.cluster.spec, secrets)
        self.conn = broker.kombu_connection(self.cluster.spec, secrets)

    def worker_states(self) -> tuple[set[str], set[str]]:
        infos = self.cluster.supervisor.infos()
        workers = [w for q in self.cluster.spec.queues for w in self.cluster.spec.worker_names(q)]
        running = {w for w in workers if infos.get(w, {}).get("statename") == "RUNNING"}
        stopping = {w for w in workers if infos.get(w, {}).get("statename") == "STOPPING"}
        return running, stopping

    def queued_too_long(self) -> dict[str, float]:
        """Celery task id -> seconds queued, for task instances queued over LOST_AFTER_S."""
        from airscale.runtime.health import db_connect

        conn = db_connect(self.cluster.spec, self.cluster.secrets())
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT external_executor_id, EXTRACT(EPOCH FROM now() - queued_dttm) FROM task_instance "
                    "WHERE state = 'queued' AND external_executor_id IS NOT NULL "
                    "AND queued_dttm < now() - make_interval(secs => %s)", (LOST_AFTER_S,))
                return {i: float(a) for i, a in cur.fetchall()}
        finally:
            conn.close()

    def expire_stranded(self) -> list[str]:
        """Mark the heartbeats of task instances stranded on a restarted worker as long past."""
        from airscale.runtime.health import db_connect
        from airscale.runtime.hostname import component_hostname

        infos = self.cluster.supervisor.infos()
        started = {component_hostname(c.name): float(infos[c.name]["start"])
                   for c in self.cluster.components()
                   if c.kind == "worker" and infos.get(c.name, {}).get("statename") == "RUNNING"
                   and infos[c.name].get("start")}
        if not started:
            return []
        conn = db_connect(self.cluster.spec, self.cluster.secrets())
        try:
            with conn, conn.cursor() as cur:
                cur.execute(
                    "SELECT id::text, hostname, EXTRACT(EPOCH FROM start_date) FROM task_instance "
                    "WHERE state = 'running' AND hostname = ANY(%s) AND start_date IS NOT NULL "
                    "AND last_heartbeat_at > now() - interval '1 day'", (list(started),))
                ids = stranded([(i, h, float(t)) for i, h, t in cur.fetchall()], started)
                if ids:
                    cur.execute("UPDATE task_instance SET last_heartbeat_at = now() - interval '1 day' "
                                "WHERE id::text = ANY(%s) AND state = 'running'", (ids,))
        finally:
            conn.close()
        if ids:
            log.warning("%d task instance(s) were running on a worker that has restarted since: "
                        "marked their heartbeat as long past so the scheduler retries them now", len(ids))
        return ids

    def queued_message_ids(self, client) -> set[str]:
        ids = set()
        for queue in self.cluster.spec.queues:
            for raw in client.lrange(queue, 0, -1):
                try:
                    ids.add(json.loads(raw)["headers"]["id"])
                except (ValueError, KeyError, TypeError):
                    pass
        return ids

    def once(self, now: float) -> list[str]:
        channel = self.conn.default_channel
        client = channel.client
        self.expire_stranded()
        old = [m for m in read_unacked(client) if now - m.delivered_at >= MIN_AGE_S]
        queued = self.queued_too_long()
        if not old and not queued:
            return []
        # Read the broker before asking the workers: a message moving from a queue to a worker
        # meanwhile is then seen in the worker's reserved list, never missed by both reads.
        in_queues = self.queued_message_ids(client) if queued else set()
        unacked_ids = {m.task_id for m in read_unacked(client)} if queued else set()
        running, stopping = self.worker_states()
        insp = self.app.control.inspect(timeout=3.0)
        ids, answered = claimed_ids(insp.active(), insp.reserved())
        why = skip_reason(running, answered, stopping)
        if why:
            log.info("%d unacknowledged message(s) older than %.0fs; not deciding: %s", len(old), MIN_AGE_S, why)
            return []
        missing = lost(queued, in_queues | unacked_ids | ids)
        if missing:
            self.republish(missing)
        tags = orphans(old, ids, time.time())
        for tag in tags:
            # kombu's own restore: atomically drop it from the unacked set and push it back to
            # the consuming end of its queue (it was taken first, so it runs next).
            channel.qos.restore_by_tag(tag, client, leftmost=False)
        if tags:
            self.restored += len(tags)
            log.warning("gave %d message(s) of dead worker(s) back to their queue (%d so far)",
                        len(tags), self.restored)
        return tags

    def republish(self, celery_ids: list[str]) -> None:
        """Publish again the messages of task instances that are still queued, as the scheduler
        does (same Celery task id, a fresh execution token)."""
        from airflow.api_fastapi.auth.tokens import JWTGenerator, get_signing_args
        from airflow.configuration import conf
        from airflow.executors import workloads
        from airflow.models.taskinstance import TaskInstance
        from airflow.providers.celery.executors.celery_executor_utils import (
            ExceptionWithTraceback,
            send_workload_to_executor,
        )
        from airflow.utils.session import create_session
        from sqlalchemy import select

        generator = JWTGenerator(
            valid_for=conf.getint("execution_api", "jwt_expiration_time"),
            audience=conf.get_mandatory_list_value("execution_api", "jwt_audience")[0],
            issuer=conf.get("api_auth", "jwt_issuer", fallback=None),
            **get_signing_args(make_secret_key_if_needed=False),
        )
        with create_session() as session:
            tis = session.scalars(select(TaskInstance).where(
                TaskInstance.state == "queued", TaskInstance.external_executor_id.in_(celery_ids)))
            for ti in tis:
                workload = workloads.ExecuteTask.make(ti, generator=generator)
                _, _, result = send_workload_to_executor((ti.key, workload, ti.queue, None))
                if isinstance(result, ExceptionWithTraceback):
                    log.error("could not publish %s again: %s", ti, result.exception)
                else:
                    self.republished += 1
                    log.warning("published the lost message of %s again (queued with no message anywhere "
                                "for more than %.0fs; %d so far)", ti, LOST_AFTER_S, self.republished)

    def run(self) -> None:
        failures = 0
        while True:
            try:
                self.once(time.time())
                failures = 0
            except Exception:  # broker restarting: log, reconnect, back off
                failures += 1
                log.exception("round failed (%d in a row)", failures)
                try:
                    self.conn.release()
                    self.app.close()
                except Exception:  # noqa: BLE001
                    pass
                self.connect()
            time.sleep(min(60.0, INTERVAL_S * 2 ** max(0, failures - 1)) if failures else INTERVAL_S)


def main(argv: list[str] | None = None) -> int:
    from airscale.runtime.daemon import spec_daemon

    return spec_daemon(__doc__.splitlines()[0], lambda spec: Reclaimer(spec).run(), argv)


if __name__ == "__main__":
    sys.exit(main())
