"""SLA monitor: emit SLAImminent / SLAExpired for open exceptions, once per exception and threshold.

Once-only holds even with two monitors running: the `sla_notifications` primary key decides which
monitor's insert wins, and only the winner emits. Emission is an outbox: the notification row and
its `event_log` entry commit together with `published = false`; after the event is produced the row
is marked published, and unpublished rows are re-sent on the next scan (a crash in between costs a
duplicate on the `sla-events` topic, never a lost notification).

Each open exception carries `sla_next_check_at`: triage sets it to the imminent time, the monitor
moves it to the deadline after SLAImminent and clears it after SLAExpired. A scan reads only the rows
whose time has come (partial index `ix_exceptions_sla_next_check`), however many are open.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from pipeline.events import EventEnvelope, EventType, utc_now
from pipeline.settings import SlaSettings
from pipeline.storage import bulk, schema
from pipeline.storage.database import transaction
from pipeline.storage.event_store import envelope_from_row, event_log_row

_SLA_NAMESPACE = uuid.UUID("9b0f6a52-3c1e-4d7a-8f25-6e4b1c0d2a97")
CLOSED_STATUSES = ("resolved", "rejected", "non_actionable")

# Due: the exceptions whose next check time has come, through a partial index that holds only open
# exceptions still to be watched, so a scan costs what is due, not what is open. Rows a stage's batch
# holds locked are skipped this round (the monitor never waits on, or deadlocks with, a stage).
_DUE = text(
    """
    SELECT e.tenant_id, e.exception_id, e.sla_deadline, e.severity, e.status, e.exception_type,
           CASE WHEN e.sla_deadline <= :now THEN 'expired' ELSE 'imminent' END AS threshold
    FROM exceptions e
    WHERE e.sla_next_check_at <= :now AND e.resolved_at IS NULL
    ORDER BY e.sla_next_check_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
    """
)


def imminent_at(deadline: datetime, window: timedelta, fraction: float) -> datetime:
    """When SLAImminent is due: `fraction` of the SLA window left before the deadline."""
    return deadline - window * fraction


def sla_event_id(tenant_id: str, exception_id: str, threshold: str) -> str:
    return str(uuid.uuid5(_SLA_NAMESPACE, f"{tenant_id}/{exception_id}/{threshold}"))


class SlaMonitor:
    def __init__(self, engine: AsyncEngine, settings: SlaSettings, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock

    async def scan(self) -> list[EventEnvelope]:
        """Record new notifications; return every notification not yet published (new and old)."""
        now = self.clock()
        async with transaction(self.engine) as connection:
            due = (await connection.execute(_DUE, {"now": now, "limit": self.settings.batch_limit})).all()
            watched = [row for row in due if row.status not in CLOSED_STATUSES and row.sla_deadline is not None]
            events = [self._event(row, now) for row in watched]
            if events:
                rows = [{"tenant_id": e.tenant_id, "exception_id": e.exception_id, "threshold": e.payload["threshold"],
                         "event_id": e.event_id, "published": False, "emitted_at": now} for e in events]
                won = await bulk.insert_rows(connection, schema.sla_notifications, rows, conflict=bulk.do_nothing(),
                                             returning=("event_id",))
                won_ids = {row.event_id for row in won}
                winners = [e for e in events if e.event_id in won_ids]
                log_rows = [event_log_row(e, "sla_monitor") for e in winners]
                await bulk.insert_rows(connection, schema.event_log, log_rows, conflict=bulk.do_nothing())
            # Next look: at the deadline after SLAImminent; never again after SLAExpired or once closed.
            imminent = {(row.tenant_id, row.exception_id) for row in watched if row.threshold == "imminent"}
            next_checks = [{"tenant_id": row.tenant_id, "exception_id": row.exception_id,
                            "sla_next_check_at": row.sla_deadline if (row.tenant_id, row.exception_id) in imminent else None}
                           for row in due]
            await bulk.update_rows(connection, schema.exceptions, ("tenant_id", "exception_id"), ("sla_next_check_at",),
                                   next_checks)
            return await self._unpublished(connection)

    async def mark_published(self, event_ids: list[str]) -> None:
        if not event_ids:
            return
        async with transaction(self.engine) as connection:
            await bulk.update_rows(connection, schema.sla_notifications, ("event_id",), ("published",),
                                   [{"event_id": event_id, "published": True} for event_id in event_ids])

    async def _unpublished(self, connection) -> list[EventEnvelope]:  # type: ignore[no-untyped-def]
        notifications, log = schema.sla_notifications, schema.event_log
        rows = await connection.execute(
            select(log).join(notifications, notifications.c.event_id == log.c.event_id)
            .where(notifications.c.published.is_(False))
            .limit(self.settings.batch_limit)
        )
        return [envelope_from_row(row) for row in rows]

    def _event(self, row, now: datetime) -> EventEnvelope:  # type: ignore[no-untyped-def]
        threshold = row.threshold
        return EventEnvelope(
            event_id=sla_event_id(row.tenant_id, row.exception_id, threshold),
            event_type=EventType.SLA_EXPIRED if threshold == "expired" else EventType.SLA_IMMINENT,
            tenant_id=row.tenant_id,
            exception_id=row.exception_id,
            timestamp=now,
            payload={
                "threshold": threshold,
                "sla_deadline": row.sla_deadline.isoformat(),
                "seconds_left": round((row.sla_deadline - now).total_seconds(), 3),
                "severity": row.severity,
                "status": row.status,
                "exception_type": row.exception_type,
            },
            metadata={"stage": "sla_monitor"},
        )
