"""StagePoolActor: runs one stage's business logic on batches (a thin shell over BatchProcessor).

A synchronous actor, so Ray runs the calls of one consumer in the order they were submitted; the
SequenceGate keeps that order across a failed batch or a restart of this actor. It drives its own
asyncio loop for the database driver.
"""

from __future__ import annotations

import asyncio
import logging

import ray

from actors.runtime import configure_logging, database_engine, settle_garbage_collector
from actors.triage_pool import ServeTriageBackend
from pipeline.kafka import SKIPPED, SequenceGate
from pipeline.packs import PackRegistry, load_packs
from pipeline.processing import BatchProcessor
from pipeline.records import BatchResult, inbound_records
from pipeline.settings import Settings
from pipeline.stages import STAGE_CLASSES, Stage, TriageStage

log = logging.getLogger(__name__)


@ray.remote(max_restarts=-1, max_task_retries=0)
class StagePoolActor:
    def __init__(self, settings: Settings, stage: str, index: int) -> None:
        configure_logging(settings)
        self.stage_name = stage
        self.index = index
        self._loop = asyncio.new_event_loop()
        self._engine = database_engine(settings)
        packs = load_packs(settings.pack_dir)
        self._processor = BatchProcessor(_stage(settings, stage, packs), self._engine, settings, packs)
        self._gate = SequenceGate()
        log.info("Initialized %sStagePool actor %d", stage.capitalize(), index)
        settle_garbage_collector()

    def process(self, consumer_id: str, sequence: int, floor: int, rows: list[tuple[object, ...]]) -> BatchResult | str:
        """`rows`: the batch's InboundRecords as plain tuples (`pipeline.records.plain`)."""
        if not self._gate.admit(consumer_id, sequence, floor):
            return SKIPPED
        result = self._loop.run_until_complete(self._processor.process(inbound_records(rows)))
        self._gate.succeeded(consumer_id, sequence)
        return result

    def tenant_rate_limits(self) -> dict[str, tuple[float, int]]:
        """The tenants' rate limits, for the intake consumers (pipeline.kafka.throttle)."""
        return self._loop.run_until_complete(self._processor.tenant_rate_limits())

    def ping(self) -> int:
        import os

        return os.getpid()

    def shutdown(self) -> None:
        self._loop.run_until_complete(self._engine.dispose())


def _stage(settings: Settings, stage: str, packs: PackRegistry) -> Stage:
    """The stage's logic. Triage asks the autoscaled model pool unless the backend is plain rules."""
    if stage == "triage" and settings.triage.backend != "rules":
        return TriageStage(settings, packs, backend=ServeTriageBackend(settings.triage.pool.chunk_size))
    return STAGE_CLASSES[stage](settings, packs)
