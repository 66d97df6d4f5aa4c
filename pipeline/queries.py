"""Read-side queries of the operations API: one exception, its events, its trace, a filtered page.

Every query takes the tenant and filters by it (DESIGN §5): an exception of another tenant is simply
not found. Values are returned as plain dicts (datetimes left as datetimes, for the caller to encode).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pipeline.storage import schema
from pipeline.storage.database import transaction

_LIST_COLUMNS = [
    schema.exceptions.c[name]
    for name in ("tenant_id", "exception_id", "status", "exception_type", "severity", "confidence", "source_system",
                 "playbook_id", "owner", "sla_deadline", "resolved_at", "created_at", "updated_at")
]
_DLQ_COLUMNS = [
    schema.dead_letter_queue.c[name]
    for name in ("id", "event_id", "event_type", "worker_type", "error_type", "error_message", "retry_count", "created_at")
]


@dataclass(frozen=True)
class ExceptionFilter:
    """Fields of `exceptions` a list may be filtered on; None means any."""

    status: str | None = None
    severity: str | None = None
    exception_type: str | None = None


async def list_exceptions(
    engine: AsyncEngine, tenant_id: str, exception_filter: ExceptionFilter, *, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """One page of the tenant's exceptions, newest first, and the total matching the filter."""
    table = schema.exceptions
    conditions = [table.c.tenant_id == tenant_id]
    for name in ("status", "severity", "exception_type"):
        value = getattr(exception_filter, name)
        if value is not None:
            conditions.append(table.c[name] == value)
    page = (select(*_LIST_COLUMNS).where(*conditions)
            .order_by(table.c.created_at.desc(), table.c.exception_id).limit(limit).offset(offset))
    async with transaction(engine) as connection:
        total = (await connection.execute(select(func.count()).select_from(table).where(*conditions))).scalar_one()
        rows = [dict(row._mapping) for row in await connection.execute(page)]
    return rows, int(total)


async def exception_status(engine: AsyncEngine, tenant_id: str, exception_id: str) -> str | None:
    """The exception's status, or None when the tenant has no such exception."""
    table = schema.exceptions
    statement = select(table.c.status).where(table.c.tenant_id == tenant_id, table.c.exception_id == exception_id)
    async with transaction(engine) as connection:
        return (await connection.execute(statement)).scalar_one_or_none()


async def exception_detail(engine: AsyncEngine, tenant_id: str, exception_id: str) -> dict[str, Any] | None:
    """The exception's row with its playbook run and feedback (each None when absent)."""
    async with transaction(engine) as connection:
        exception = await _exception_row(connection, tenant_id, exception_id)
        if exception is None:
            return None
        runs, feedback = schema.playbook_runs, schema.feedback
        run = (await connection.execute(
            select(runs).where(runs.c.tenant_id == tenant_id, runs.c.exception_id == exception_id))).first()
        outcome = (await connection.execute(
            select(feedback).where(feedback.c.tenant_id == tenant_id, feedback.c.exception_id == exception_id))).first()
    return {**exception, "playbook_run": _plain(run), "feedback": _plain(outcome)}


async def exception_events(engine: AsyncEngine, exception_id: str, *, tenant_id: str | None) -> list[dict[str, Any]]:
    """Every recorded event of the exception, in order. `tenant_id=None` (admin only) spans tenants."""
    table = schema.event_log
    statement = select(table).where(table.c.exception_id == exception_id)
    if tenant_id is not None:
        statement = statement.where(table.c.tenant_id == tenant_id)
    statement = statement.order_by(table.c.event_timestamp, table.c.created_at, table.c.event_id)
    async with transaction(engine) as connection:
        return [_event(dict(row._mapping)) for row in await connection.execute(statement)]


async def exception_trace(engine: AsyncEngine, tenant_id: str, exception_id: str) -> dict[str, Any] | None:
    """The exception's path through the stages: each event in order with how every stage handled it
    (status, retries, `duration_ms` of the processing, `latency_ms` from the event's timestamp to its
    commit), DLQ entries, and the current state. None when the tenant has no such exception."""
    events_table, log_table = schema.event_log, schema.event_processing_log
    dlq = schema.dead_letter_queue
    async with transaction(engine) as connection:
        exception = await _exception_row(connection, tenant_id, exception_id)
        if exception is None:
            return None
        events = [dict(row._mapping) for row in await connection.execute(
            select(events_table)
            .where(events_table.c.tenant_id == tenant_id, events_table.c.exception_id == exception_id)
            .order_by(events_table.c.event_timestamp, events_table.c.created_at, events_table.c.event_id))]
        dead_letters = [dict(row._mapping) for row in await connection.execute(
            select(*_DLQ_COLUMNS).where(dlq.c.tenant_id == tenant_id, dlq.c.exception_id == exception_id).order_by(dlq.c.id))]
        # Found by event id, the leading column of the processing log's key: its rows carry no index by
        # exception (migration 0010). An event never recorded in event_log (rejected before it was)
        # has its failed row found through its dead letter.
        event_ids = sorted({event["event_id"] for event in events} | {entry["event_id"] for entry in dead_letters})
        processing = [dict(row._mapping) for row in await connection.execute(
            select(log_table)
            .where(log_table.c.event_id.in_(event_ids),
                   log_table.c.tenant_id == tenant_id, log_table.c.exception_id == exception_id)
            .order_by(log_table.c.created_at, log_table.c.id))] if event_ids else []
    return build_trace(exception, events, processing, dead_letters)


def build_trace(exception: dict[str, Any], events: list[dict[str, Any]], processing: list[dict[str, Any]],
                dead_letters: list[dict[str, Any]]) -> dict[str, Any]:
    """Join events with their processing records (pure; rows as the tables hold them)."""
    by_event: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in processing:
        by_event[row["event_id"]].append(row)
    timestamps = {event["event_id"]: event["event_timestamp"] for event in events}
    steps = []
    for event in events:
        handled = [_handling(row, event["event_timestamp"]) for row in by_event.pop(event["event_id"], [])]
        steps.append({
            "event_id": event["event_id"],
            "event_type": event["event_type"],
            "produced_by": event["produced_by"],
            "timestamp": event["event_timestamp"],
            "caused_by": (event["metadata"] or {}).get("caused_by"),
            "handled_by": handled,
        })
    # Processing of events not in event_log (e.g. rejected before they were recorded).
    unmatched = [_handling(row, timestamps.get(row["event_id"])) for rows in by_event.values() for row in rows]
    stages: dict[str, dict[str, Any]] = {}
    for row in processing:
        stage = stages.setdefault(row["worker_type"], {"events": 0, "completed": 0, "retries": 0, "failed": 0,
                                                        "duration_ms": 0.0})
        stage["events"] += 1
        stage["completed"] += row["status"] == "completed"
        stage["failed"] += row["status"] == "failed"
        stage["retries"] += row["retry_count"] or 0
        stage["duration_ms"] += row["duration_ms"] or 0.0
    completed = [row["completed_at"] for row in processing if row["completed_at"] is not None]
    started = min((event["event_timestamp"] for event in events), default=None)
    return {
        "tenant_id": exception["tenant_id"],
        "exception_id": exception["exception_id"],
        "state": {name: exception.get(name) for name in (
            "status", "exception_type", "severity", "confidence", "playbook_id", "owner", "sla_deadline", "resolved_at",
            "approval_required", "escalated", "updated_at")},
        "events": steps,
        "unmatched_processing": unmatched,
        "stages": stages,
        "retries": sum(stage["retries"] for stage in stages.values()),
        "dead_letters": dead_letters,
        "started_at": started,
        "last_completed_at": max(completed, default=None),
        "elapsed_ms": _ms_between(started, max(completed, default=None)),
    }


def _handling(row: dict[str, Any], event_timestamp: datetime | None) -> dict[str, Any]:
    return {
        "worker_type": row["worker_type"],
        "status": row["status"],
        "retry_count": row["retry_count"],
        "duration_ms": row["duration_ms"],
        "completed_at": row["completed_at"],
        "latency_ms": _ms_between(event_timestamp, row["completed_at"]),
        "last_attempt_at": row["last_attempt_at"],
        "next_retry_at": row["next_retry_at"],
        "error_type": row["error_type"],
        "error_message": row["error_message"],
        "output_event_ids": list(row["output_event_ids"] or []),
        "topic": row["topic"],
        "partition": row["partition"],
        "offset": row["offset"],
    }


def _ms_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds() * 1000, 3)


async def _exception_row(connection: AsyncConnection, tenant_id: str, exception_id: str) -> dict[str, Any] | None:
    table = schema.exceptions
    row = (await connection.execute(
        select(table).where(table.c.tenant_id == tenant_id, table.c.exception_id == exception_id))).first()
    return _plain(row)


def _event(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": row["event_id"],
        "event_type": row["event_type"],
        "tenant_id": row["tenant_id"],
        "exception_id": row["exception_id"],
        "correlation_id": row["correlation_id"],
        "timestamp": row["event_timestamp"],
        "produced_by": row["produced_by"],
        "recorded_at": row["created_at"],
        "payload": row["payload"],
        "metadata": row["metadata"],
        "version": row["version"],
    }


def _plain(row: Any) -> dict[str, Any] | None:
    return None if row is None else dict(row._mapping)
