"""StageConsumerActor: one Kafka consumer of a stage's group, feeding that stage's pool actors.

It starts consuming as soon as it is constructed, so Ray's restart of a killed consumer (the
constructor re-runs) resumes from the committed offsets without anyone calling it.
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
from pipeline.kafka import StageConsumerLoop, make_consumer, make_producer
from pipeline.records import BatchResult, InboundRecord, plain
from pipeline.routing import input_topic
from pipeline.settings import Settings

log = logging.getLogger(__name__)


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
        )
        self._stopped = asyncio.Event()
        self._task = asyncio.get_event_loop().create_task(self._run())
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
        return {"consumer_id": self.consumer_id, "pid": os.getpid(), "counters": dict(self.counters),
                "in_flight": self.loop.tracker.in_flight(), **asdict(self.loop.stats)}

    async def stop(self, grace_s: float) -> bool:
        """Stop consuming, finish in-flight work within `grace_s`, commit, close. True when clean."""
        await self.loop.stop(grace_s)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        return self.loop.tracker.in_flight() == 0

    async def ping(self) -> int:
        return os.getpid()
