"""Due retries, from `event_processing_log`, back onto their stage's topic.

A retry is durable from the moment the failed attempt commits (status `retrying`, `next_retry_at`).
The supervisor asks for due retries, publishes each with the attempt number in a header, then moves
`next_retry_at` to a re-dispatch deadline (`SENTINAI_RETRY__REDISPATCH_AFTER_S`). A crash between
publishing and marking, or a broker that loses the published record, publishes the attempt again;
the stage processes only the copy whose attempt number matches the recorded `retry_count`, once
(`pipeline.redelivery.is_due`), so each retry happens at most once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from pipeline.records import OutboundRecord
from pipeline.redelivery import RETRY_ATTEMPT_HEADER
from pipeline.routing import input_topic
from pipeline.settings import KafkaSettings
from pipeline.storage import schema
from pipeline.storage.database import transaction
from pipeline.storage.event_store import envelope_from_row


@dataclass(frozen=True)
class DueRetry:
    event_id: str
    worker_type: str
    attempt: int
    due_at: datetime
    record: OutboundRecord


class RetryScheduler:
    def __init__(self, engine: AsyncEngine, kafka: KafkaSettings) -> None:
        self.engine = engine
        self.kafka = kafka

    async def due(self, now: datetime, limit: int = 1000) -> list[DueRetry]:
        log, events = schema.event_processing_log, schema.event_log
        statement = (
            select(log.c.worker_type, log.c.retry_count, log.c.next_retry_at, events)
            .join(events, events.c.event_id == log.c.event_id)
            .where(log.c.status == "retrying", log.c.next_retry_at <= now)
            .order_by(log.c.next_retry_at)
            .limit(limit)
        )
        async with transaction(self.engine) as connection:
            rows = (await connection.execute(statement)).all()
        return [self._due(row) for row in rows]

    async def mark_dispatched(self, retries: list[DueRetry], *, redispatch_at: datetime) -> None:
        """Push the due time to `redispatch_at`: if the published attempt never runs (a broker that
        lost its data), it is published again then. Only a row still at the dispatched attempt moves."""
        if not retries:
            return
        log = schema.event_processing_log
        statement = (
            update(log)
            .where(log.c.event_id == bindparam("b_event_id"), log.c.worker_type == bindparam("b_worker_type"),
                   log.c.status == "retrying", log.c.retry_count == bindparam("b_attempt"))
            .values(next_retry_at=redispatch_at)
        )
        parameters = [{"b_event_id": r.event_id, "b_worker_type": r.worker_type, "b_attempt": r.attempt} for r in retries]
        async with transaction(self.engine) as connection:
            await connection.execute(statement, parameters)

    async def pending_count(self) -> int:
        log = schema.event_processing_log
        async with transaction(self.engine) as connection:
            statement = select(func.count()).select_from(log).where(log.c.status == "retrying")
            return int((await connection.execute(statement)).scalar_one())

    def _due(self, row) -> DueRetry:  # type: ignore[no-untyped-def]
        event = envelope_from_row(row)
        headers = (
            ("event_type", event.event_type.value.encode()),
            ("tenant_id", event.tenant_id.encode()),
            (RETRY_ATTEMPT_HEADER, str(row.retry_count).encode()),
        )
        record = OutboundRecord(input_topic(self.kafka, row.worker_type), event.partition_key.encode(), event.to_bytes(), headers)
        return DueRetry(event.event_id, row.worker_type, row.retry_count, row.next_retry_at, record)
