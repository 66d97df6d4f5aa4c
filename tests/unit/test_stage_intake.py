"""pipeline.stages.intake (normalise, redact, upsert as open) and BatchState bookkeeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.errors import MissingIdentifierError, UnknownTenantError, ValidationError
from pipeline.events import EventEnvelope, EventType
from pipeline.packs import PackRegistry
from pipeline.settings import Settings
from pipeline.stages import BatchState, Emission, IntakeStage
from pipeline.stages.intake import normalise_exception, parse_timestamp
from pipeline.storage import schema
from tests.unit.loaded_rows import LoadedColumnsOnly

NOW = datetime(2025, 6, 5, 9, 30, tzinfo=UTC)
FINANCE_PII = ("account_number", "iban", "client_name", "tax_id", "trader_email")


def ingested(
    payload: dict[str, Any], *, tenant_id: str = "FIN_ACME", exception_id: str = "EXC-1"
) -> EventEnvelope:
    return EventEnvelope(
        event_id="evt-ingest-1",
        event_type=EventType.EXCEPTION_INGESTED,
        tenant_id=tenant_id,
        exception_id=exception_id,
        timestamp=NOW,
        payload=payload,
    )


# --- normalise_exception ----------------------------------------------------------------------------


def test_normalise_full_payload() -> None:
    event = ingested(
        {
            "exception_id": "EXC-1",
            "source_system": "  Murex Prod/EU ",
            "exception_type": "FAIL_TO_DELIVER",
            "description": "Trade TRD-1   failed\n to settle;  ask jane@acme.com",
            "attributes": {"trade_id": "TRD-1", "trader_email": "jane@acme.com", "amount": "1,000"},
            "occurred_at": "2025-06-05T10:00:00+02:00",
        }
    )
    assert normalise_exception(event, FINANCE_PII) == {
        "exception_id": "EXC-1",
        "source_system": "murex-prod-eu",
        "type_hint": "FAIL_TO_DELIVER",
        "description": "Trade TRD-1 failed to settle; ask [EMAIL REDACTED]",
        "attributes": {"trade_id": "TRD-1", "trader_email": "[REDACTED]", "amount": "1,000"},
        "occurred_at": "2025-06-05T08:00:00+00:00",
        "redacted": ["description:email", "trader_email"],
    }


def test_normalise_minimal_payload_uses_defaults() -> None:
    assert normalise_exception(ingested({}), FINANCE_PII) == {
        "exception_id": "EXC-1",
        "source_system": "unknown",
        "type_hint": None,
        "description": "",
        "attributes": {},
        "occurred_at": NOW.isoformat(),
        "redacted": [],
    }


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("SWIFT", "swift"),
        ("Calypso  EU #2", "calypso-eu-2"),
        ("core_banking.v2", "core_banking.v2"),
        ("%%%", "unknown"),
        ("", "unknown"),
    ],
)
def test_source_system_is_lower_cased_and_cleaned(source: str, expected: str) -> None:
    assert normalise_exception(ingested({"source_system": source}), ())["source_system"] == expected


def test_type_hint_is_taken_from_type_hint_when_exception_type_is_absent() -> None:
    assert normalise_exception(ingested({"type_hint": "  STL_FAIL "}), ())["type_hint"] == "STL_FAIL"


EIGHT_AM = datetime(2025, 6, 5, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        "2025-06-05T08:00:00Z",
        "2025-06-05T08:00:00+00:00",
        "2025-06-05T10:00:00+02:00",
        "2025-06-05T08:00:00",  # naive means UTC
        " 2025-06-05 08:00:00 ",
        1749110400,  # epoch seconds
        1749110400.0,
        1749110400000,  # epoch milliseconds
    ],
)
def test_timestamps_in_every_accepted_form(value: Any) -> None:
    parsed = parse_timestamp(value, default=NOW)
    assert parsed == EIGHT_AM
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize("value", [None, ""])
def test_missing_timestamp_takes_the_default(value: Any) -> None:
    assert parse_timestamp(value, default=NOW) == NOW


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("yesterday", "is not ISO-8601"),
        ("2025-13-01T00:00:00", "is not ISO-8601"),
        (True, "is not a timestamp"),
        ([2025, 6, 5], "is not a timestamp"),
        (10**20, "is out of range"),
    ],
)
def test_bad_timestamp_is_a_validation_error(value: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_timestamp(value, default=NOW)


def test_bad_occurred_at_in_a_payload_is_rejected() -> None:
    with pytest.raises(ValidationError, match="occurred_at 'soon' is not ISO-8601"):
        normalise_exception(ingested({"occurred_at": "soon"}), ())


def test_payload_exception_id_must_match_the_envelope() -> None:
    with pytest.raises(MissingIdentifierError, match="'EXC-2' differs from the envelope's 'EXC-1'"):
        normalise_exception(ingested({"exception_id": "EXC-2"}), ())
    assert normalise_exception(ingested({"exception_id": " EXC-1 "}), ())["exception_id"] == "EXC-1"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"description": 42}, "description must be a string"),
        ({"attributes": ["a"]}, "attributes must be an object"),
    ],
)
def test_wrongly_typed_fields_are_rejected(payload: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        normalise_exception(ingested(payload), ())


def test_description_is_capped_at_8000_characters() -> None:
    assert len(normalise_exception(ingested({"description": "x" * 9000}), ())["description"]) == 8000


# --- IntakeStage.handle -----------------------------------------------------------------------------


async def test_intake_emits_normalized_and_puts_an_open_exception(
    settings: Settings, packs: PackRegistry
) -> None:
    state = BatchState(now=NOW)
    event = ingested(
        {
            "source_system": "Murex",
            "exception_type": "STL_FAIL",
            "description": "SSN 123-45-6789 in a comment",
            "attributes": {"client_name": "Jane Doe", "amount": 5},
            "occurred_at": 1749110400,
        }
    )
    emissions = await IntakeStage(settings, packs).handle(event, state)

    normalised = normalise_exception(event, packs.view("FIN_ACME").domain.guardrails.pii_fields)
    assert emissions == [Emission(EventType.EXCEPTION_NORMALIZED, normalised)]
    assert normalised["description"] == "SSN [SSN REDACTED] in a comment"
    assert normalised["attributes"] == {"client_name": "[REDACTED]", "amount": 5}
    row = state.exceptions[("FIN_ACME", "EXC-1")]
    assert row["status"] == "open"
    assert row["source_system"] == "murex"
    assert row["type_hint"] == "STL_FAIL"
    assert row["description"] == "SSN [SSN REDACTED] in a comment"
    assert row["occurred_at"] == EIGHT_AM
    assert row["created_at"] == NOW
    assert row["exception_type"] is None and row["severity"] is None and row["sla_deadline"] is None
    assert state._new_exceptions == {("FIN_ACME", "EXC-1")}
    assert dict(state._dirty_exception_columns) == {}


async def test_re_ingest_resets_triage_but_keeps_created_at(settings: Settings, packs: PackRegistry) -> None:
    created = NOW - timedelta(hours=3)
    state = BatchState(now=NOW)
    state.exceptions[("FIN_ACME", "EXC-1")] = LoadedColumnsOnly(
        IntakeStage, {"tenant_id": "FIN_ACME", "exception_id": "EXC-1", "created_at": created})
    await IntakeStage(settings, packs).handle(ingested({"description": "again"}), state)
    row = state.exceptions[("FIN_ACME", "EXC-1")]
    assert (row["status"], row["exception_type"], row["severity"], row["created_at"]) == (
        "open",
        None,
        None,
        created,
    )


async def test_intake_rejects_an_unknown_tenant(settings: Settings, packs: PackRegistry) -> None:
    state = BatchState(now=NOW)
    with pytest.raises(UnknownTenantError, match="'FIN_NOBODY' is not registered"):
        await IntakeStage(settings, packs).handle(ingested({}, tenant_id="FIN_NOBODY"), state)
    assert state.exceptions == {}


# --- BatchState bookkeeping -------------------------------------------------------------------------


def loaded_state() -> BatchState:
    state = BatchState(now=NOW)
    state.exceptions[("FIN_ACME", "EXC-1")] = {
        "tenant_id": "FIN_ACME",
        "exception_id": "EXC-1",
        "status": "open",
        "owner": None,
    }
    return state


def test_update_of_a_loaded_row_marks_only_those_columns_dirty() -> None:
    state = loaded_state()
    key = ("FIN_ACME", "EXC-1")
    state.update_exception(key, status="triaged", severity="HIGH")
    assert state.exceptions[key]["status"] == "triaged"
    assert state._dirty_exception_columns[key] == {"status", "severity"}
    state.update_exception(key, owner="settlements-ops")
    assert state._dirty_exception_columns[key] == {"status", "severity", "owner"}
    assert state._new_exceptions == set()


def test_put_exception_marks_the_row_new_and_later_updates_ride_along() -> None:
    state = BatchState(now=NOW)
    key = ("FIN_ACME", "EXC-2")
    state.put_exception(key, {"tenant_id": "FIN_ACME", "exception_id": "EXC-2", "status": "open"})
    state.update_exception(key, status="triaged")
    assert state._new_exceptions == {key}
    assert state.exceptions[key]["status"] == "triaged"
    assert key not in state._dirty_exception_columns


def test_update_of_a_row_never_loaded_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        BatchState(now=NOW).update_exception(("FIN_ACME", "NOPE"), status="open")


def test_playbook_runs_and_inserts_are_queued() -> None:
    state = loaded_state()
    key = ("FIN_ACME", "EXC-1")
    state.put_playbook_run(key, {"status": "running"})
    state.insert(schema.feedback, {"outcome": "resolved"})
    state.insert(schema.feedback, {"outcome": "escalated"})
    assert state._dirty_playbook_runs == {key}
    assert state._inserts == {"feedback": [{"outcome": "resolved"}, {"outcome": "escalated"}]}


def test_exception_lookup_by_event() -> None:
    state = loaded_state()
    assert state.exception(ingested({}))["status"] == "open"  # type: ignore[index]
    assert state.exception(ingested({}, exception_id="EXC-9")) is None
