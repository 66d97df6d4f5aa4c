"""The SLA monitor against the real PostgreSQL, with an injected clock: SLAImminent and SLAExpired once
per exception and threshold (also with two monitors scanning at once), the outbox until published,
nothing for closed exceptions, and a scan that reads only what is due."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.events import EventType
from pipeline.settings import DatabaseSettings, SlaSettings
from pipeline.stages.sla_monitor import SlaMonitor, imminent_at
from pipeline.storage import bulk, schema
from pipeline.storage.database import create_engine

pytestmark = pytest.mark.integration

CREATED = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=100)  # imminent at 80 minutes (a fifth left), expired at 100


def _triaged(exception_id: str, *, status: str = "triaged", resolved: bool = False) -> dict[str, object]:
    deadline = CREATED + WINDOW
    return {
        "tenant_id": "FIN_ACME", "exception_id": exception_id, "status": status, "severity": "HIGH",
        "exception_type": "SETTLEMENT_FAIL", "created_at": CREATED, "updated_at": CREATED, "sla_deadline": deadline,
        "sla_next_check_at": imminent_at(deadline, WINDOW, 0.2), "resolved_at": CREATED if resolved else None,
    }


def _kinds(events: list) -> list[tuple[str, EventType]]:  # type: ignore[type-arg]
    return sorted((event.exception_id, event.event_type) for event in events)


def test_each_threshold_is_notified_once_and_stays_in_the_outbox_until_published(database: str) -> None:
    async def scenario() -> None:
        engine = create_engine(database, DatabaseSettings())
        clock = [CREATED]
        monitor = SlaMonitor(engine, SlaSettings(), clock=lambda: clock[0])
        rival = SlaMonitor(engine, SlaSettings(), clock=lambda: clock[0])
        try:
            async with engine.begin() as connection:
                rows = [_triaged("OPEN"), _triaged("CLOSED", status="rejected"), _triaged("DONE", resolved=True)]
                await bulk.insert_rows(connection, schema.exceptions, rows, conflict=bulk.do_nothing())

            clock[0] = CREATED + timedelta(minutes=79)
            assert await monitor.scan() == []

            clock[0] = CREATED + timedelta(minutes=81)
            first, second = await asyncio.gather(monitor.scan(), rival.scan())
            # Two monitors at once: one SLAImminent between them (the rival may skip the row the
            # other holds, and sees the notification on its next scan).
            assert {(e.exception_id, e.event_type, e.event_id) for e in first + second} == {
                ("OPEN", EventType.SLA_IMMINENT, (first + second)[0].event_id)}
            imminent = (first + second)[0]
            assert imminent.payload["threshold"] == "imminent" and imminent.payload["seconds_left"] == 19 * 60
            for scanner in (monitor, rival):  # outbox: returned until published
                assert [e.event_id for e in await scanner.scan()] == [imminent.event_id]
            await monitor.mark_published([imminent.event_id])
            assert await monitor.scan() == []

            clock[0] = CREATED + timedelta(minutes=101)
            expired = await monitor.scan()
            assert _kinds(expired) == [("OPEN", EventType.SLA_EXPIRED)]
            await monitor.mark_published([expired[0].event_id])
            clock[0] = CREATED + timedelta(days=3)
            assert await monitor.scan() == []

            async with engine.begin() as connection:
                notified = (await connection.exec_driver_sql(
                    "SELECT exception_id, threshold FROM sla_notifications ORDER BY emitted_at")).all()
                logged = (await connection.exec_driver_sql(
                    "SELECT count(*) FROM event_log WHERE produced_by = 'sla_monitor'")).scalar_one()
                watching = (await connection.exec_driver_sql(
                    "SELECT count(*) FROM exceptions WHERE sla_next_check_at IS NOT NULL AND resolved_at IS NULL")).scalar_one()
            assert [tuple(row) for row in notified] == [("OPEN", "imminent"), ("OPEN", "expired")]
            assert logged == 2
            assert watching == 0  # the closed exception was dropped from the watch list, not notified
        finally:
            await engine.dispose()

    asyncio.run(scenario())


def test_an_exception_already_past_its_deadline_gets_only_sla_expired(database: str) -> None:
    async def scenario() -> None:
        engine = create_engine(database, DatabaseSettings())
        monitor = SlaMonitor(engine, SlaSettings(), clock=lambda: CREATED + timedelta(hours=5))
        try:
            async with engine.begin() as connection:
                await bulk.insert_rows(connection, schema.exceptions, [_triaged("LATE")], conflict=bulk.do_nothing())
            assert _kinds(await monitor.scan()) == [("LATE", EventType.SLA_EXPIRED)]
        finally:
            await engine.dispose()

    asyncio.run(scenario())


def test_the_scan_reads_the_due_rows_through_the_partial_index(database: str) -> None:
    async def scenario() -> None:
        engine = create_engine(database, DatabaseSettings())
        try:
            async with engine.begin() as connection:
                await connection.exec_driver_sql(
                    "INSERT INTO exceptions (tenant_id, exception_id, status, created_at, sla_deadline, sla_next_check_at) "
                    "SELECT 'FIN_ACME', 'E' || i, 'awaiting_approval', now(), now() + interval '1 day', "
                    "now() + interval '20 hours' FROM generate_series(1, 20000) AS i")
                await connection.exec_driver_sql("ANALYZE exceptions")
                plan = "\n".join(row[0] for row in (await connection.exec_driver_sql(
                    "EXPLAIN SELECT * FROM exceptions e WHERE e.sla_next_check_at <= now() AND e.resolved_at IS NULL "
                    "ORDER BY e.sla_next_check_at LIMIT 1000 FOR UPDATE SKIP LOCKED")).all())
            assert "ix_exceptions_sla_next_check" in plan and "Seq Scan" not in plan, plan
        finally:
            await engine.dispose()

    asyncio.run(scenario())
