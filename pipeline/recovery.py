"""Re-publish events that the database says were emitted but never consumed by their next stage.

Needed when the broker lost its data (the bundled broker keeps everything in memory): the stages'
outputs are safe in `event_log`, so the lost messages can be rebuilt from there. An event counts as
unconsumed for a stage when that stage has no `event_processing_log` row and no DLQ entry for it.
Re-publishing an event that is in fact still queued is harmless: the stage recognises the duplicate.
Events that never reached intake (still only in the lost broker) cannot be recovered this way.
"""

from __future__ import annotations

from sqlalchemy import and_, exists, select
from sqlalchemy.ext.asyncio import AsyncEngine

from pipeline.events import EventType
from pipeline.records import OutboundRecord
from pipeline.routing import EVENT_ROUTES, input_topic
from pipeline.settings import KafkaSettings
from pipeline.storage import schema
from pipeline.storage.database import transaction
from pipeline.storage.event_store import envelope_from_row


def _consumers() -> dict[str, list[str]]:
    """Stage -> the event types routed to it (intake's input comes from outside: not recoverable)."""
    by_stage: dict[str, list[str]] = {}
    for event_type, stages in EVENT_ROUTES.items():
        for stage in stages:
            if event_type is not EventType.EXCEPTION_INGESTED:
                by_stage.setdefault(stage, []).append(event_type.value)
    return by_stage


async def unconsumed_events(engine: AsyncEngine, kafka: KafkaSettings, *, limit: int = 10_000) -> list[OutboundRecord]:
    events, log, dlq = schema.event_log, schema.event_processing_log, schema.dead_letter_queue
    records: list[OutboundRecord] = []
    async with transaction(engine) as connection:
        for stage, event_types in sorted(_consumers().items()):
            processed = exists().where(and_(log.c.event_id == events.c.event_id, log.c.worker_type == stage))
            dead_lettered = exists().where(and_(dlq.c.event_id == events.c.event_id, dlq.c.worker_type == stage))
            statement = (
                select(events)
                .where(events.c.event_type.in_(event_types), ~processed, ~dead_lettered)
                .order_by(events.c.created_at)
                .limit(limit)
            )
            for row in await connection.execute(statement):
                event = envelope_from_row(row)
                headers = (("event_type", event.event_type.value.encode()), ("tenant_id", event.tenant_id.encode()))
                records.append(OutboundRecord(input_topic(kafka, stage), event.partition_key.encode(), event.to_bytes(), headers))
    return records
