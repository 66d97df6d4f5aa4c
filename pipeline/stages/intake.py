"""Intake: validate and normalise an ingested exception, redact PII, upsert it as `open`."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from pipeline.errors import MissingIdentifierError, ValidationError
from pipeline.events import EventEnvelope, EventType
from pipeline.redaction import redact_attributes, redact_text
from pipeline.stages.base import BatchState, Emission, Stage

_MAX_DESCRIPTION_CHARS = 8000
_SOURCE_SYSTEM = re.compile(r"[^a-z0-9._-]+")


class IntakeStage(Stage):
    name = "intake"
    accepts = frozenset({EventType.EXCEPTION_INGESTED})
    exception_columns = ("created_at",)  # a re-ingested exception keeps it; everything else is rewritten

    async def handle(self, event: EventEnvelope, state: BatchState) -> list[Emission]:
        tenant = self.packs.view(event.tenant_id)
        normalised = normalise_exception(event, tenant.domain.guardrails.pii_fields)
        key = (event.tenant_id, event.exception_id)
        existing = state.exceptions.get(key)
        row = {
            "tenant_id": event.tenant_id,
            "exception_id": event.exception_id,
            "status": "open",
            "source_system": normalised["source_system"],
            "type_hint": normalised["type_hint"],
            "description": normalised["description"],
            "attributes": normalised["attributes"],
            "occurred_at": datetime.fromisoformat(normalised["occurred_at"]),
            # A re-ingested exception is re-triaged from scratch.
            "exception_type": None, "severity": None, "confidence": None, "rationale": None,
            "triage_backend": None, "triage_model": None, "sla_deadline": None, "actionable": None,
            "approval_required": None, "escalated": None, "policy_reasons": None, "playbook_id": None,
            "owner": None, "resolved_at": None,
            "created_at": existing["created_at"] if existing else state.now,
        }
        state.put_exception(key, row)
        return [Emission(EventType.EXCEPTION_NORMALIZED, normalised)]


def normalise_exception(event: EventEnvelope, pii_fields: tuple[str, ...]) -> dict[str, Any]:
    """The canonical form of an ingested exception. Raises ValidationError naming the bad field."""
    raw = event.payload
    payload_id = raw.get("exception_id")
    if payload_id is not None and str(payload_id).strip() != event.exception_id:
        raise MissingIdentifierError(f"payload exception_id {payload_id!r} differs from the envelope's {event.exception_id!r}")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ValidationError("payload.description must be a string")
    attributes = raw.get("attributes", {})
    if not isinstance(attributes, dict):
        raise ValidationError("payload.attributes must be an object")
    redacted_description, text_kinds = redact_text(" ".join(description.split())[:_MAX_DESCRIPTION_CHARS])
    redacted_attributes, redacted_fields = redact_attributes(attributes, pii_fields)
    type_hint = raw.get("exception_type") or raw.get("type_hint")
    return {
        "exception_id": event.exception_id,
        "source_system": _normalise_source(raw.get("source_system")),
        "type_hint": str(type_hint).strip()[:128] if type_hint else None,
        "description": redacted_description,
        "attributes": redacted_attributes,
        "occurred_at": parse_timestamp(raw.get("occurred_at"), default=event.timestamp).isoformat(),
        "redacted": sorted(set(redacted_fields) | {f"description:{kind}" for kind in text_kinds}),
    }


def _normalise_source(value: Any) -> str:
    if not value:
        return "unknown"
    return _SOURCE_SYSTEM.sub("-", str(value).strip().lower()).strip("-")[:128] or "unknown"


def parse_timestamp(value: Any, *, default: datetime) -> datetime:
    """ISO-8601 (naive means UTC), or epoch seconds / milliseconds. Raises ValidationError."""
    if value is None or value == "":
        return default.astimezone(UTC)
    if isinstance(value, bool):
        raise ValidationError(f"occurred_at {value!r} is not a timestamp")
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 10**11 else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise ValidationError(f"occurred_at {value!r} is out of range") from exc
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValidationError(f"occurred_at {value!r} is not ISO-8601") from exc
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    raise ValidationError(f"occurred_at {value!r} is not a timestamp")
