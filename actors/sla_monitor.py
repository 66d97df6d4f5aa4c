"""SlaMonitorActor: scans for exceptions near or past their SLA every `SENTINAI_SLA__INTERVAL_S`."""

from __future__ import annotations

import asyncio
import logging
import os

import ray

from actors.naming import SLA_MONITOR_NAME
from actors.runtime import configure_logging, database_engine
from pipeline.kafka import make_producer
from pipeline.routing import topics_for
from pipeline.settings import Settings
from pipeline.stages import SlaMonitor

log = logging.getLogger(__name__)


@ray.remote(max_restarts=-1, max_task_retries=0)
class SlaMonitorActor:
    def __init__(self, settings: Settings) -> None:
        configure_logging(settings)
        self.settings = settings
        self._engine = database_engine(settings)
        self._monitor = SlaMonitor(self._engine, settings.sla)
        assert settings.kafka.bootstrap_servers
        self._producer = make_producer(settings.kafka, settings.kafka.bootstrap_servers, SLA_MONITOR_NAME)
        self.emitted = 0
        self.scans = 0
        self._task = asyncio.get_event_loop().create_task(self._run())
        log.info("Initialized SLAMonitorWorker worker: interval_s=%s", settings.sla.interval_s)

    async def _run(self) -> None:
        await self._producer.start()
        while True:
            try:
                await self.scan_once()
            except Exception:  # noqa: BLE001 - the next scan retries; nothing is lost (outbox)
                log.warning("SLA scan failed; retrying in %.1fs", self.settings.sla.interval_s, exc_info=True)
            await asyncio.sleep(self.settings.sla.interval_s)

    async def scan_once(self) -> int:
        events = await self._monitor.scan()
        for event in events:
            for topic in topics_for(self.settings.kafka, event.event_type):
                await self._producer.send_and_wait(topic, event.to_bytes(), key=event.partition_key.encode())
            log.info("%s %s", event.event_type.value, event.log_context())
        await self._monitor.mark_published([event.event_id for event in events])
        self.scans += 1
        self.emitted += len(events)
        return len(events)

    async def stats(self) -> dict[str, int]:
        return {"pid": os.getpid(), "scans": self.scans, "emitted": self.emitted}

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._producer.stop()
        await self._engine.dispose()
