"""`event_log`: every event the platform saw or emitted, by event id (the runbook's event store)."""

from __future__ import annotations

from typing import Any

from pipeline.events import EventEnvelope, EventType


def event_log_row(event: EventEnvelope, produced_by: str) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "event_type": event.event_type.value,
        "tenant_id": event.tenant_id,
        "exception_id": event.exception_id,
        "correlation_id": event.correlation_id,
        "partition_key": event.partition_key,
        "payload": event.payload,
        "metadata": event.metadata,
        "version": event.version,
        "event_timestamp": event.timestamp,
        "produced_by": produced_by,
    }


def envelope_from_row(row: Any) -> EventEnvelope:
    """Rebuild the envelope from an `event_log` row (to re-publish it)."""
    return EventEnvelope(
        event_id=row.event_id,
        event_type=EventType(row.event_type),
        tenant_id=row.tenant_id,
        exception_id=row.exception_id,
        timestamp=row.event_timestamp,
        correlation_id=row.correlation_id,
        payload=row.payload,
        metadata=row.metadata,
        version=row.version,
    )
