"""Turn a submitted exception (`{"tenant_id": ..., "exception": {...}}`) into an ExceptionIngested event.

Used by `sentinai submit`, `sentinai demo` and the HTTP ingest endpoint, so all three accept and
reject exactly the same input.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from pipeline.errors import MissingIdentifierError, ValidationError
from pipeline.events import EventEnvelope, EventType, new_event_id
from pipeline.packs import PackRegistry


def ingestion_event(tenant_id: Any, exception: Any, *, packs: PackRegistry, now: datetime, source: str) -> EventEnvelope:
    """Validate one submission. Raises a ValidationError subclass saying what is wrong.

    A missing `exception_id` gets a generated one (returned in the event); the tenant must be
    registered and active.
    """
    if not isinstance(tenant_id, str) or not tenant_id:
        raise MissingIdentifierError("tenant_id is missing")
    if not isinstance(exception, dict):
        raise ValidationError("exception must be a JSON object")
    packs.view(tenant_id)
    exception_id = exception.get("exception_id") or f"EXC-{uuid.uuid4().hex[:16].upper()}"
    if not isinstance(exception_id, str):
        raise ValidationError("exception.exception_id must be a string")
    try:
        return EventEnvelope(
            event_id=new_event_id(),
            event_type=EventType.EXCEPTION_INGESTED,
            tenant_id=tenant_id,
            exception_id=exception_id,
            timestamp=now,
            payload={**exception, "exception_id": exception_id},
            metadata={"source": source},
        )
    except PydanticValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ValidationError(f"{where}: {first['msg']}") from error


def parse_submission_line(line: str) -> tuple[Any, Any]:
    """One JSON Lines entry -> (tenant_id, exception). Raises ValidationError."""
    try:
        document = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValidationError(f"not JSON: {error.msg} at column {error.colno}") from error
    if not isinstance(document, dict):
        raise ValidationError("each line must be a JSON object")
    unknown = set(document) - {"tenant_id", "exception"}
    if unknown:
        raise ValidationError(f"unknown key(s) {sorted(unknown)}; expected tenant_id and exception")
    return document.get("tenant_id"), document.get("exception")
