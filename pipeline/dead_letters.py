"""What a stage records about an event it dead-letters: the `dead_letter_queue` row, the record it
sends to the DLQ topic, and the identity of a record that did not even decode (so an operator can
still find it by event_id, and a redelivery is not dead-lettered twice)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline.errors import SentinaiError
from pipeline.events import EventEnvelope
from pipeline.records import InboundRecord, OutboundRecord


@dataclass
class Rejected:
    """An event (or undecodable record) a stage gave up on, or is retrying later."""

    record: InboundRecord
    event: EventEnvelope | None
    error: SentinaiError
    retry_count: int = 0


def dead_letter_row(item: Rejected, worker_type: str, now: datetime) -> dict[str, Any]:
    """The `dead_letter_queue` row: the error, and the record exactly as consumed."""
    record, event = item.record, item.event
    identity = identity_of_undecoded(record) if event is None else {}
    return {
        "event_id": event.event_id if event else identity.get("event_id") or raw_event_id(record),
        "event_type": event.event_type.value if event else identity.get("event_type"),
        "tenant_id": event.tenant_id if event else identity.get("tenant_id") or header_value(record, "tenant_id"),
        "exception_id": event.exception_id if event else identity.get("exception_id"),
        "worker_type": worker_type,
        "error_type": item.error.error_type,
        "error_message": str(item.error)[:2000],
        "retry_count": item.retry_count,
        "original_topic": record.topic,
        "original_partition": record.partition,
        "original_offset": record.offset,
        "original_key": record.key,
        "original_value": record.value,
        "original_headers": [[name, value.decode("utf-8", "replace")] for name, value in record.headers],
        "payload": json.loads(event.model_dump_json()) if event else None,
        "created_at": now,
    }


def dead_letter_record(item: Rejected, worker_type: str, dlq_topic: str) -> OutboundRecord:
    """The record for the DLQ topic: the original bytes, with the error and origin in headers."""
    headers = (
        *item.record.headers,
        ("x-sentinai-stage", worker_type.encode()),
        ("x-sentinai-error-type", item.error.error_type.encode()),
        ("x-sentinai-error", str(item.error)[:500].encode()),
        ("x-sentinai-original-topic", item.record.topic.encode()),
        ("x-sentinai-original-partition", str(item.record.partition).encode()),
        ("x-sentinai-original-offset", str(item.record.offset).encode()),
    )
    return OutboundRecord(dlq_topic, item.record.key, item.record.value or b"", headers)


def raw_event_id(record: InboundRecord) -> str:
    """A stable id for a record that did not decode, so a redelivery is not dead-lettered twice."""
    digest = hashlib.sha256()
    digest.update(f"{record.topic}/{record.partition}/{record.offset}/".encode())
    digest.update(record.value or b"")
    return f"raw-{digest.hexdigest()[:40]}"


_IDENTITY_LIMITS = {"event_id": 128, "event_type": 64, "tenant_id": 64, "exception_id": 128}


def identity_of_undecoded(record: InboundRecord) -> dict[str, str]:
    """Whatever ids a rejected record's JSON carries, so an operator can find it by event_id."""
    try:
        document = json.loads(record.value or b"")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    if not isinstance(document, dict):
        return {}
    return {
        name: value for name, limit in _IDENTITY_LIMITS.items()
        if isinstance(value := document.get(name), str) and 0 < len(value) <= limit
    }


def record_context(record: InboundRecord) -> str:
    """The runbook's `tenant_id= exception_id= event_id=` fields, from whatever a bad record carries."""
    identity = identity_of_undecoded(record)
    return (f"tenant_id={identity.get('tenant_id') or header_value(record, 'tenant_id') or '-'} "
            f"exception_id={identity.get('exception_id', '-')} event_id={identity.get('event_id') or raw_event_id(record)}")


def header_value(record: InboundRecord, name: str) -> str | None:
    for key, value in record.headers:
        if key == name:
            return value.decode("utf-8", "replace")[:64]
    return None
