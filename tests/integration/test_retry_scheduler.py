"""`RetryScheduler` against PostgreSQL: due retries come back with their event, and a dispatch moves
the due time of exactly the attempt it published, found by `(event_id, worker_type)` (migration
0010 took the index off `id`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from sqlalchemy import insert, select

from pipeline.events import utc_now
from pipeline.ingest import ingestion_event
from pipeline.packs import load_packs
from pipeline.redelivery import RETRY_ATTEMPT_HEADER
from pipeline.retry_scheduler import DueRetry, RetryScheduler
from pipeline.settings import DatabaseSettings, KafkaSettings
from pipeline.storage import schema
from pipeline.storage.database import create_engine
from pipeline.storage.event_store import event_log_row

pytestmark = pytest.mark.integration


@dataclass
class _Outcome:
    event_id: str
    now: datetime
    later: datetime
    due: list[DueRetry]
    due_times: dict[str, datetime]
    due_after: list[DueRetry]


async def _scenario(url: str) -> _Outcome:
    now = utc_now()
    packs = load_packs()
    event = ingestion_event("FIN_ACME", {"exception_id": "EXC_DUE", "description": "settlement failed"}, packs=packs,
                            now=now, source="test")
    log = schema.event_processing_log
    engine = create_engine(url, DatabaseSettings())
    try:
        async with engine.begin() as connection:
            await connection.execute(insert(schema.event_log).values(event_log_row(event, "source")))
            # The same event retrying at two stages, due at different times: only intake's is due.
            await connection.execute(insert(log), [
                {"event_id": event.event_id, "worker_type": worker_type, "event_type": "ExceptionIngested",
                 "tenant_id": "FIN_ACME", "exception_id": "EXC_DUE", "status": "retrying", "retry_count": attempt,
                 "next_retry_at": now + offset, "last_attempt_at": now}
                for worker_type, attempt, offset in (("intake", 2, timedelta(seconds=-1)),
                                                     ("triage", 1, timedelta(minutes=5)))
            ])
        scheduler = RetryScheduler(engine, KafkaSettings())
        due = await scheduler.due(now)
        later = now + timedelta(minutes=1)
        await scheduler.mark_dispatched(due, redispatch_at=later)
        async with engine.connect() as connection:
            due_times = {row.worker_type: row.next_retry_at for row in await connection.execute(
                select(log.c.worker_type, log.c.next_retry_at).where(log.c.event_id == event.event_id))}
        return _Outcome(event.event_id, now, later, due, due_times, await scheduler.due(now))
    finally:
        await engine.dispose()


def test_a_dispatched_retry_moves_only_its_own_attempts_due_time(database: str) -> None:
    outcome = asyncio.run(_scenario(database))

    [due] = outcome.due
    assert (due.event_id, due.worker_type, due.attempt) == (outcome.event_id, "intake", 2)
    assert due.record.topic == "exceptions"
    assert (RETRY_ATTEMPT_HEADER, b"2") in due.record.headers
    assert outcome.due_times["intake"] == outcome.later
    assert outcome.due_times["triage"] == outcome.now + timedelta(minutes=5)
    assert outcome.due_after == []
