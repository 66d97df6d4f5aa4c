"""SupervisorActor: owns retries and DLQ replays, and keeps the platform's actors and topics in place.

Named (`sentinai:supervisor`), detached and restartable. It keeps no state of its own: due retries
and unpublished replays live in PostgreSQL, so a SIGKILL costs at most one poll interval. Its loops:

- retries: every `SENTINAI_RETRY__POLL_INTERVAL_S`, publish the retries that are due;
- replays: publish DLQ replays whose publication a crash interrupted;
- actors: re-create a consumer, pool or SLA monitor actor that is gone for good (Ray itself restarts
  a killed actor; this covers one that ran out of restarts or was removed);
- topics: re-create the platform's topics when the broker lost them (the bundled broker keeps
  everything in memory), re-publish the events in flight from `event_log`, and do so again 10, 30
  and 60 s later for any a consumer skipped while the broker came back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import ray

from actors.deployment import start_consumer_actor, start_pool_actor, start_sla_monitor
from actors.naming import SLA_MONITOR_NAME, SUPERVISOR_NAME, consumer_actor_name, pool_actor_name
from actors.runtime import configure_logging, database_engine
from pipeline.dlq import DeadLetterQueue
from pipeline.events import utc_now
from pipeline.kafka import ensure_topics, make_producer
from pipeline.kafka.client import list_topics
from pipeline.records import OutboundRecord
from pipeline.recovery import unconsumed_events
from pipeline.retry_scheduler import RetryScheduler
from pipeline.routing import BROKER_EPOCH_TOPIC, all_topics
from pipeline.settings import STAGE_NAMES, Settings

log = logging.getLogger(__name__)

_WATCH_INTERVAL_S = 2.0
_TOPIC_CHECK_INTERVAL_S = 3.0
# After the broker lost its data, recover again this many seconds later. While the broker comes back,
# a consumer can commit an offset of the old log into the new one (or resume past the start of the
# new log) and skip re-published events; a later pass re-publishes whatever is still unconsumed.
_FOLLOW_UP_RECOVERIES_S = (10.0, 30.0, 60.0)


@ray.remote(max_restarts=-1, max_task_retries=0)
class SupervisorActor:
    def __init__(self, settings: Settings, sla_monitor: bool) -> None:
        configure_logging(settings)
        self.settings = settings
        self.sla_monitor = sla_monitor
        self._engine = database_engine(settings)
        self._retries = RetryScheduler(self._engine, settings.kafka)
        self._dlq = DeadLetterQueue(self._engine, settings.kafka)
        assert settings.kafka.bootstrap_servers
        self._producer = make_producer(settings.kafka, settings.kafka.bootstrap_servers, SUPERVISOR_NAME)
        self.counters = {"retries_dispatched": 0, "replays_published": 0, "actors_recreated": 0, "topics_recreated": 0,
                         "events_recovered": 0}
        self._follow_up_recoveries: list[float] = []  # monotonic times of the recoveries still to run
        self._tasks = [asyncio.get_event_loop().create_task(self._start())]
        log.info("Initialized Supervisor: namespace=%s, sla_monitor=%s", settings.ray.namespace, sla_monitor)

    async def _start(self) -> None:
        await self._producer.start()
        self._tasks += [
            asyncio.create_task(self._every(self.settings.retry.poll_interval_s, self.dispatch_due_retries)),
            asyncio.create_task(self._every(_WATCH_INTERVAL_S, self.publish_pending_replays)),
            asyncio.create_task(self._every(_WATCH_INTERVAL_S, self.replace_missing_actors)),
            asyncio.create_task(self._every(_TOPIC_CHECK_INTERVAL_S, self.recreate_lost_topics)),
        ]

    async def _every(self, interval_s: float, step: Callable[[], Awaitable[int]]) -> None:
        while True:
            try:
                await step()
            except Exception:  # noqa: BLE001 - state is in PostgreSQL; the next round picks it up
                log.warning("supervisor step %s failed; retrying in %.1fs", step.__name__, interval_s, exc_info=True)
            await asyncio.sleep(interval_s)

    async def dispatch_due_retries(self) -> int:
        due = await self._retries.due(utc_now())
        if not due:
            return 0
        await self._publish([retry.record for retry in due])
        redispatch_at = utc_now() + timedelta(seconds=self.settings.retry.redispatch_after_s)
        await self._retries.mark_dispatched(due, redispatch_at=redispatch_at)
        for retry in due:
            log.info("retry %d of event_id=%s to %s (due %s)", retry.attempt, retry.event_id, retry.worker_type,
                     retry.due_at.isoformat())
        self.counters["retries_dispatched"] += len(due)
        return len(due)

    async def publish_pending_replays(self) -> int:
        replays = await self._dlq.unpublished_replays()
        if not replays:
            return 0
        await self._publish([replay.record for replay in replays])
        await self._dlq.mark_published([replay.replay_id for replay in replays], utc_now())
        self.counters["replays_published"] += len(replays)
        return len(replays)

    async def replace_missing_actors(self) -> int:
        namespace = self.settings.ray.namespace
        replaced = 0
        for name, start in self._expected_actors():
            try:
                ray.get_actor(name, namespace=namespace)
            except ValueError:
                log.warning("actor %s is gone; re-creating it (its work is redelivered)", name)
                start()
                replaced += 1
        self.counters["actors_recreated"] += replaced
        return replaced

    async def recreate_lost_topics(self) -> int:
        """Re-create missing topics. A missing epoch topic means the broker lost its data (clients
        re-create the stage topics by mentioning them, the epoch topic nobody mentions): then the
        events in flight are rebuilt from the database."""
        bootstrap = self.settings.kafka.bootstrap_servers
        assert bootstrap
        await self._run_due_follow_up_recoveries()
        wanted = all_topics(self.settings.kafka)
        present = await list_topics(bootstrap)
        if set(wanted) <= present:
            return 0
        epoch = self.settings.kafka.topic(BROKER_EPOCH_TOPIC)
        created = await ensure_topics(self.settings.kafka, bootstrap, [topic for topic in wanted if topic != epoch])
        if epoch not in present:
            log.warning("the broker lost its topics (restarted without its data?): re-created %s; recovering events in "
                        "flight", created)
            await self.recover_unconsumed()
            # Only now: if the recovery fails (the broker is still settling), the epoch topic is still
            # missing and the next step recovers again (duplicates are deduplicated; losses would not be).
            created += await ensure_topics(self.settings.kafka, bootstrap, [epoch])
            now = time.monotonic()
            self._follow_up_recoveries = [now + delay for delay in _FOLLOW_UP_RECOVERIES_S]
        self.counters["topics_recreated"] += len(created)
        return len(created)

    async def _run_due_follow_up_recoveries(self) -> None:
        if self._follow_up_recoveries and self._follow_up_recoveries[0] <= time.monotonic():
            await self.recover_unconsumed()
            self._follow_up_recoveries.pop(0)

    async def recover_unconsumed(self) -> int:
        """Re-publish, from `event_log`, every event its next stage has not consumed (after the broker
        lost its data). Called when topics had to be re-created, and by `sentinai up` when it starts a
        fresh bundled broker."""
        records = await unconsumed_events(self._engine, self.settings.kafka)
        if records:
            await self._publish(records)
            log.warning("re-published %d event(s) the broker had lost, from event_log", len(records))
        self.counters["events_recovered"] += len(records)
        return len(records)

    def _deployed_stages(self) -> list[str]:
        """Stages that are deployed: at least one of their actors exists. A stage whose process
        (`sentinai worker`) stopped it is left alone; so is, rarely, a stage that lost every actor
        for good at once (restart it with `sentinai up` or `sentinai worker`)."""
        present = _named_actors(self.settings.ray.namespace)
        return [stage for stage in STAGE_NAMES if any(name.startswith(f"sentinai:{stage}:") for name in present)]

    def _expected_actors(self) -> list[tuple[str, Callable[[], Any]]]:
        expected: list[tuple[str, Callable[[], Any]]] = []
        for stage in self._deployed_stages():
            options = self.settings.stages.for_stage(stage)
            expected += [(pool_actor_name(stage, i), _bind(start_pool_actor, self.settings, stage, i))
                         for i in range(options.concurrency)]
            expected += [(consumer_actor_name(stage, i), _bind(start_consumer_actor, self.settings, stage, i))
                         for i in range(options.consumers)]
        if self.sla_monitor:
            expected.append((SLA_MONITOR_NAME, _bind(start_sla_monitor, self.settings)))
        return expected

    async def _publish(self, records: list[OutboundRecord]) -> None:
        deliveries = [
            await self._producer.send(record.topic, record.value, key=record.key, headers=list(record.headers))
            for record in records
        ]
        await asyncio.gather(*deliveries)

    async def ping(self) -> int:
        return os.getpid()

    async def health(self, timeout_s: float = 2.0) -> dict[str, Any]:
        """Per stage: consumer and pool actors alive vs configured, each consumer's lag per partition
        and last poll; overall `ok` / `degraded` (some actor missing or silent) / `down` (a stage has
        no live consumer). Every stage of the pipeline is reported, deployed or not: exceptions stop
        at a stage that nobody runs (a `sentinai worker` not started yet, or stopped)."""
        namespace = self.settings.ray.namespace
        stages: dict[str, Any] = {}
        for stage in STAGE_NAMES:
            options = self.settings.stages.for_stage(stage)
            consumers = []
            for index in range(options.consumers):
                consumers.append(await _call(consumer_actor_name(stage, index), namespace, "stats", timeout_s))
            pools_alive = 0
            for index in range(options.concurrency):
                # A pool actor answers between batches: give it longer than a consumer.
                pools_alive += (await _call(pool_actor_name(stage, index), namespace, "ping", timeout_s * 3)) is not None
            live = [c for c in consumers if c is not None]
            stages[stage] = {
                "group_id": self.settings.stages.group_id(stage),
                "consumers": {"alive": len(live), "configured": options.consumers},
                "pool": {"alive": pools_alive, "configured": options.concurrency},
                "lag": {partition: lag for c in live for partition, lag in c.get("lag", {}).items()},
                "in_flight": sum(c.get("in_flight", 0) for c in live),
                "held_by_rate_limit": _summed(c.get("held_by_rate_limit", {}) for c in live),
                "last_poll_at": max((c.get("last_poll_at", 0.0) for c in live), default=None),
            }
        healthy = all(s["consumers"]["alive"] == s["consumers"]["configured"] and s["pool"]["alive"] == s["pool"]["configured"]
                      for s in stages.values())
        down = any(s["consumers"]["alive"] == 0 for s in stages.values())
        return {"status": "down" if down else ("ok" if healthy else "degraded"), "stages": stages,
                "supervisor": {"pid": os.getpid(), **self.counters}}

    async def stats(self) -> dict[str, Any]:
        return {"pid": os.getpid(), **self.counters, "pending_retries": await self._retries.pending_count()}

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._producer.stop()
        await self._engine.dispose()


async def _call(name: str, namespace: str, method: str, timeout_s: float) -> Any:
    """An actor method's answer, or None when the actor is missing, dead or too slow to answer."""
    try:
        actor = ray.get_actor(name, namespace=namespace)
        return await asyncio.wait_for(getattr(actor, method).remote(), timeout=timeout_s)
    except Exception:  # noqa: BLE001 - any failure means "not healthy"; the caller reports it
        return None


def _summed(counts: Any) -> dict[str, int]:
    """Per-key sums of several `{key: count}` maps."""
    total: dict[str, int] = {}
    for entry in counts:
        for key, value in entry.items():
            total[key] = total.get(key, 0) + value
    return dict(sorted(total.items()))


def _named_actors(namespace: str) -> list[str]:
    return [entry["name"] for entry in ray.util.list_named_actors(all_namespaces=True) if entry["namespace"] == namespace]


def _bind(function: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    return lambda: function(*args)


def start_supervisor(settings: Settings, *, sla_monitor: bool) -> Any:
    return SupervisorActor.options(
        name=SUPERVISOR_NAME, namespace=settings.ray.namespace, lifetime="detached", num_cpus=0.05, get_if_exists=True,
    ).remote(settings, sla_monitor)
