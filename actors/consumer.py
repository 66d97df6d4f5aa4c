"""StageConsumerActor: one Kafka consumer of a stage's group, feeding that stage's pool actors.

It starts consuming as soon as it is constructed, so Ray's restart of a killed consumer (the
constructor re-runs) resumes from the committed offsets without anyone calling it.

The intake stage's consumers apply the tenants' rate limits (`pipeline.kafka.throttle`): the
pipeline's entry is where a tenant is slowed, so every later stage sees only what was admitted. They
read the limits from their pool actors, which keep the tenants table's view.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from dataclasses import asdict
from typing import Any

import ray

from actors.naming import consumer_actor_name, pool_actor_name
from actors.runtime import configure_logging, settle_garbage_collector
from pipeline.events import EventType
from pipeline.kafka import StageConsumerLoop, make_consumer, make_producer
from pipeline.kafka.throttle import TenantLimit, TenantThrottle
from pipeline.records import BatchResult, InboundRecord, plain
from pipeline.routing import input_topic, topics_for
from pipeline.settings import Settings

log = logging.getLogger(__name__)

_LIMITS_TIMEOUT_S = 30.0  # a pool actor answers between batches


@ray.remote(max_restarts=-1, max_task_retries=0)
class StageConsumerActor:
    def __init__(self, settings: Settings, stage: str, index: int, namespace: str) -> None:
        configure_logging(settings)
        self.settings = settings
        self.stage = stage
        self.index = index
        stage_settings = settings.stages.for_stage(stage)
        # A fresh id per incarnation: the pool's sequence gates start over with a restarted consumer.
        self.consumer_id = f"{consumer_actor_name(stage, index)}#{uuid.uuid4().hex[:8]}"
        self._namespace = namespace
        self._pools = [ray.get_actor(pool_actor_name(stage, i), namespace=namespace) for i in range(stage_settings.concurrency)]
        bootstrap = settings.kafka.bootstrap_servers
        assert bootstrap, "the composition root resolves the bootstrap servers"
        group_id = settings.stages.group_id(stage)
        topic = input_topic(settings.kafka, stage)
        client_id = consumer_actor_name(stage, index)
        self.counters: dict[str, int] = {}
        self.throttle = TenantThrottle(report_interval_s=settings.rate_limits.report_interval_s) if stage == "intake" else None
        self.loop = StageConsumerLoop(
            name=client_id,
            consumer=make_consumer(settings.kafka, bootstrap, group_id, client_id),
            producer=make_producer(settings.kafka, bootstrap, client_id),
            topic=topic,
            submit=self._submit,
            lanes=len(self._pools),
            max_in_flight_per_lane=stage_settings.max_in_flight_batches,
            max_batch_events=stage_settings.max_batch_events,
            fetch_timeout_ms=settings.kafka.fetch_timeout_ms,
            commit_interval_s=settings.kafka.commit_interval_ms / 1000,
            on_result=self._count,
            throttle=self.throttle,
            max_held_records=settings.rate_limits.max_held_events,
            backpressure_topic=topics_for(settings.kafka, EventType.BACKPRESSURE_DETECTED)[0],
        )
        self._stopped = asyncio.Event()
        self._task = asyncio.get_event_loop().create_task(self._run())
        self._limits_task = asyncio.get_event_loop().create_task(self._follow_rate_limits()) if self.throttle else None
        settle_garbage_collector()
        log.info(
            "Initialized %sWorker worker: topics=[%r], group_id=%s, concurrency=%d",
            stage.capitalize() if stage != "sla_monitor" else "SLAMonitor", topic, group_id, len(self._pools),
        )

    async def _run(self) -> None:
        try:
            await self.loop.start()
            await self.loop.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: consumer loop crashed; exiting so Ray restarts this actor", self.consumer_id)
            os._exit(1)
        finally:
            self._stopped.set()

    async def _follow_rate_limits(self) -> None:
        """Keep the throttle's limits those of the tenants table; until the first answer no tenant is limited."""
        assert self.throttle is not None
        while True:
            for pool in list(self._pools):
                try:
                    limits = await asyncio.wait_for(pool.tenant_rate_limits.remote(), timeout=_LIMITS_TIMEOUT_S)
                except Exception as error:  # noqa: BLE001 - a busy or restarting pool: ask another, or keep the last limits
                    log.debug("%s: no rate limits from a pool actor: %s", self.consumer_id, error)
                    continue
                fresh = {tenant: TenantLimit(rate, burst) for tenant, (rate, burst) in limits.items()}
                if fresh != self.throttle.limits:
                    log.info("%s: tenant rate limits %s", self.consumer_id,
                             {tenant: f"{limit.events_per_s:g}/s burst {limit.burst}" for tenant, limit in sorted(fresh.items())})
                    self.throttle.configure(fresh)
                break
            await asyncio.sleep(self.settings.rate_limits.refresh_interval_s)

    async def _submit(self, lane: int, sequence: int, floor: int, records: list[InboundRecord]) -> Any:
        try:
            return await self._pools[lane].process.remote(self.consumer_id, sequence, floor, plain(records))
        except ray.exceptions.ActorDiedError:
            # Gone for good (Ray restarts a killed actor itself): the supervisor re-creates it under
            # the same name; look it up again before the lane re-sends.
            try:
                self._pools[lane] = ray.get_actor(pool_actor_name(self.stage, lane), namespace=self._namespace)
            except ValueError:
                log.warning("%s: pool actor %s is gone and not re-created yet", self.consumer_id, pool_actor_name(self.stage, lane))
            raise

    def _count(self, result: BatchResult) -> None:
        for stat in result.stats:
            key = f"{stat.event_type}|{stat.tenant_id}|{stat.status}"
            self.counters[key] = self.counters.get(key, 0) + 1

    async def stats(self) -> dict[str, Any]:
        held = self.throttle.held_by_tenant() if self.throttle is not None else {}
        return {"consumer_id": self.consumer_id, "pid": os.getpid(), "counters": dict(self.counters),
                "in_flight": self.loop.tracker.in_flight(), "held_by_rate_limit": held, **asdict(self.loop.stats)}

    async def stop(self, grace_s: float) -> bool:
        """Stop consuming, finish in-flight work within `grace_s`, commit, close. True when clean."""
        if self._limits_task is not None:
            self._limits_task.cancel()
        await self.loop.stop(grace_s)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        return self.loop.tracker.in_flight() == 0

    async def ping(self) -> int:
        return os.getpid()
