"""`queries.exception_trace` against PostgreSQL: it finds the processing rows of an exception through
its events' ids and its dead letters' (migration 0010 dropped the processing log's index by
exception), and shows no other tenant's rows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert

from pipeline.queries import exception_trace
from pipeline.settings import DatabaseSettings
from pipeline.storage import schema
from pipeline.storage.database import create_engine

pytestmark = pytest.mark.integration

_T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _event_row(event_id: str, tenant_id: str, event_type: str, seconds: int, produced_by: str) -> dict[str, Any]:
    return {
        "event_id": event_id, "event_type": event_type, "tenant_id": tenant_id, "exception_id": "EXC-1",
        "correlation_id": "corr-1", "partition_key": f"{tenant_id}:EXC-1", "payload": {}, "metadata": {},
        "version": 1, "event_timestamp": _T0 + timedelta(seconds=seconds), "produced_by": produced_by,
    }


def _processing_row(event_id: str, tenant_id: str, worker_type: str, status: str, seconds: int) -> dict[str, Any]:
    return {
        "event_id": event_id, "worker_type": worker_type, "event_type": "ExceptionIngested", "tenant_id": tenant_id,
        "exception_id": "EXC-1", "status": status, "retry_count": 0, "last_attempt_at": _T0 + timedelta(seconds=seconds),
        "completed_at": _T0 + timedelta(seconds=seconds) if status == "completed" else None,
        "created_at": _T0 + timedelta(seconds=seconds),
    }


async def _trace(url: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    engine = create_engine(url, DatabaseSettings())
    try:
        async with engine.begin() as connection:
            for tenant_id in ("FIN_ACME", "FIN_GLOBEX"):  # the same exception id at two tenants
                await connection.execute(insert(schema.exceptions).values(
                    tenant_id=tenant_id, exception_id="EXC-1", status="triaged"))
            await connection.execute(insert(schema.event_log), [
                _event_row("acme-ingested", "FIN_ACME", "ExceptionIngested", 0, "source"),
                _event_row("acme-normalized", "FIN_ACME", "ExceptionNormalized", 1, "intake"),
                _event_row("globex-ingested", "FIN_GLOBEX", "ExceptionIngested", 0, "source"),
            ])
            await connection.execute(insert(schema.event_processing_log), [
                _processing_row("acme-ingested", "FIN_ACME", "intake", "completed", 1),
                _processing_row("acme-normalized", "FIN_ACME", "triage", "completed", 2),
                # Rejected before event_log recorded it: found through its dead letter.
                _processing_row("acme-rejected", "FIN_ACME", "policy", "failed", 3),
                _processing_row("globex-ingested", "FIN_GLOBEX", "intake", "completed", 1),
            ])
            await connection.execute(insert(schema.dead_letter_queue).values(
                event_id="acme-rejected", event_type="TriageCompleted", tenant_id="FIN_ACME", exception_id="EXC-1",
                worker_type="policy", error_type="ValidationError", error_message="bad payload"))
        return (await exception_trace(engine, "FIN_ACME", "EXC-1"), await exception_trace(engine, "FIN_ACME", "EXC-2"))
    finally:
        await engine.dispose()


def test_trace_finds_processing_rows_through_events_and_dead_letters(database: str) -> None:
    trace, missing = asyncio.run(_trace(database))

    assert missing is None
    assert trace is not None
    assert [(step["event_id"], [handled["worker_type"] for handled in step["handled_by"]]) for step in trace["events"]] == [
        ("acme-ingested", ["intake"]), ("acme-normalized", ["triage"])]
    assert [(row["worker_type"], row["status"]) for row in trace["unmatched_processing"]] == [("policy", "failed")]
    assert [entry["event_id"] for entry in trace["dead_letters"]] == ["acme-rejected"]
    assert trace["stages"]["intake"] == {"events": 1, "completed": 1, "retries": 0, "failed": 0, "duration_ms": 0.0}
    assert trace["stages"]["policy"]["failed"] == 1
