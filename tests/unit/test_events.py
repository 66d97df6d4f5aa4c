"""pipeline.events: the strict, versioned envelope, deterministic derived ids and decoding."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pydantic
import pydantic_core
import pytest

from pipeline.errors import EventDecodeError, MissingIdentifierError, SchemaVersionError
from pipeline.events import EventEnvelope, EventType, decode_event, derived_event_id, partition_key

NOW = datetime(2025, 6, 5, 9, 30, tzinfo=UTC)


def envelope(**overrides: Any) -> EventEnvelope:
    fields: dict[str, Any] = {
        "event_id": "evt-1",
        "event_type": EventType.EXCEPTION_INGESTED,
        "tenant_id": "FIN_ACME",
        "exception_id": "EXC-1",
        "timestamp": NOW,
        "payload": {"description": "DVP sale failed to settle"},
    }
    fields.update(overrides)
    return EventEnvelope(**fields)


def test_unknown_field_is_rejected() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        envelope(priority="high")
    errors = info.value.errors()
    assert [(error["type"], error["loc"]) for error in errors] == [("extra_forbidden", ("priority",))]


def test_envelope_is_frozen() -> None:
    event = envelope()
    with pytest.raises(pydantic.ValidationError):
        event.tenant_id = "FIN_GLOBEX"  # type: ignore[misc]
    assert event.tenant_id == "FIN_ACME"


@pytest.mark.parametrize(
    ("field", "value"),
    [("tenant_id", "FIN ACME"), ("exception_id", "EXC/1"), ("event_id", ""), ("event_type", "SomethingElse")],
)
def test_malformed_identifiers_are_rejected(field: str, value: str) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        envelope(**{field: value})
    assert info.value.errors()[0]["loc"] == (field,)


def test_correlation_id_defaults_to_exception_id() -> None:
    assert envelope().correlation_id == "EXC-1"
    assert envelope(correlation_id="batch-77").correlation_id == "batch-77"


def test_naive_timestamp_is_taken_as_utc() -> None:
    event = envelope(timestamp=datetime(2025, 6, 5, 9, 30))
    assert event.timestamp.tzinfo is UTC
    assert event.timestamp == NOW


def test_aware_timestamp_keeps_its_instant() -> None:
    paris = datetime(2025, 6, 5, 11, 30, tzinfo=timezone(timedelta(hours=2)))
    assert envelope(timestamp=paris).timestamp == NOW


def test_partition_key_is_tenant_colon_exception() -> None:
    assert envelope().partition_key == "FIN_ACME:EXC-1"
    assert partition_key("HC_MERIDIAN", "CLM-9") == "HC_MERIDIAN:CLM-9"


def derive(parent: EventEnvelope, *, stage: str = "intake", position: int = 0) -> EventEnvelope:
    return parent.derive(
        EventType.EXCEPTION_NORMALIZED,
        stage=stage,
        position=position,
        payload={"n": 1},
        now=NOW + timedelta(seconds=5),
    )


def test_derive_gives_the_same_id_for_the_same_inputs() -> None:
    first = derive(envelope())
    again = derive(envelope(payload={"something": "else"}))  # the payload does not enter the id
    assert first.event_id == again.event_id == derived_event_id("evt-1", "intake", 0)


def test_derived_ids_are_the_uuid5_ids_earlier_releases_recorded() -> None:
    # Ids already in event_log must come out again on a re-run: the fast path is uuid5, bit for bit.
    namespace = uuid.UUID("5e2f3b1a-7c4d-4e8f-9a6b-0d1c2e3f4a5b")
    parents = ["evt-1", str(uuid.UUID(int=0)), "é/ü", "x" * 300, *(str(uuid.UUID(int=n * 7919 + 1)) for n in range(200))]
    for parent in parents:
        for stage, position in (("intake", 0), ("playbook", 3), ("tool", 12)):
            expected = str(uuid.uuid5(namespace, f"{parent}/{stage}/{position}"))
            assert derived_event_id(parent, stage, position) == expected
    assert derived_event_id("evt-1", "intake", 0) == "188cdb18-00d2-5718-a29d-cec147bed8c0"


def test_derive_ids_differ_by_stage_position_and_parent() -> None:
    ids = {
        derive(envelope()).event_id,
        derive(envelope(), stage="triage").event_id,
        derive(envelope(), position=1).event_id,
        derive(envelope(event_id="evt-2")).event_id,
    }
    assert len(ids) == 4


def test_derived_event_carries_identity_and_causation() -> None:
    parent = envelope(correlation_id="corr-9", metadata={"source": "cli"})
    child = derive(parent, stage="intake", position=0)
    assert child.event_type is EventType.EXCEPTION_NORMALIZED
    assert (child.tenant_id, child.exception_id, child.correlation_id) == ("FIN_ACME", "EXC-1", "corr-9")
    assert child.timestamp == NOW + timedelta(seconds=5)
    assert child.payload == {"n": 1}
    assert child.metadata == {"source": "cli", "caused_by": "evt-1", "stage": "intake"}


def test_a_derived_event_is_the_instance_model_construct_would_build() -> None:
    # `derive` sets pydantic's instance state itself: a pydantic upgrade that adds to it shows here.
    child = derive(envelope(metadata={"source": "cli"}), stage="intake", position=0)
    constructed = EventEnvelope.model_construct(**child.__dict__)
    assert vars(child) == vars(constructed) and list(vars(child)) == list(vars(constructed))
    instance_state = ("__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")
    assert set(pydantic.BaseModel.__slots__) == {"__dict__", *instance_state}
    for attribute in instance_state:
        assert getattr(child, attribute) == getattr(constructed, attribute)
    assert child == constructed and child.to_bytes() == constructed.to_bytes()
    assert decode_event(child.to_bytes()) == child


def test_round_trip_through_bytes() -> None:
    event = envelope(metadata={"source": "cli"})
    decoded = decode_event(event.to_bytes())
    assert decoded == event
    assert decoded.event_type is EventType.EXCEPTION_INGESTED


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xc3\x28not utf-8", "not UTF-8 JSON"),
        (b"{not json", "not UTF-8 JSON"),
        (b"[1, 2, 3]", "JSON list"),
        (b'"just a string"', "JSON str"),
        (None, "tombstone"),
    ],
)
def test_undecodable_values_raise_event_decode_error(raw: bytes | None, message: str) -> None:
    with pytest.raises(EventDecodeError, match=message) as info:
        decode_event(raw)
    assert info.value.retryable is False
    assert info.value.error_type == "validation_error"


def test_object_that_is_not_an_event_names_the_missing_field() -> None:
    raw = json.dumps({"event_type": "ExceptionIngested", "tenant_id": "FIN_ACME", "exception_id": "E1"}).encode()
    with pytest.raises(EventDecodeError, match="event_id: Field required"):
        decode_event(raw)


def test_event_without_exception_id_is_a_missing_identifier() -> None:
    raw = json.dumps({"event_type": "ExceptionIngested", "tenant_id": "FIN_ACME"}).encode()
    with pytest.raises(MissingIdentifierError, match="no exception_id") as info:
        decode_event(raw)
    assert info.value.error_type == "missing_identifier"


def test_unsupported_version_raises_schema_version_error() -> None:
    document = json.loads(envelope().to_bytes())
    document["version"] = 2
    with pytest.raises(SchemaVersionError, match="version 2 is not supported") as info:
        decode_event(json.dumps(document).encode())
    assert info.value.error_type == "unsupported_version"
    assert info.value.retryable is False


def test_missing_version_means_version_one() -> None:
    document = json.loads(envelope().to_bytes())
    del document["version"]
    assert decode_event(json.dumps(document).encode()).version == 1


@pytest.mark.parametrize("event", [
    envelope(),
    envelope(timestamp=datetime(2025, 6, 5, 11, 30, 0, 123456, tzinfo=timezone(timedelta(hours=2))), correlation_id="corr-9",
             payload={"amount": 1e-7, "big": 2**63, "nested": [{"x": None, "y": True}], "text": 'quote " back \\ tab \t é ☃ 𝄞',
                      "when": datetime(2025, 1, 1, tzinfo=UTC)},
             metadata={"source": "kafka", "empty": {}}),
    envelope(payload={}, metadata={}, version=1),
    envelope().derive(EventType.TRIAGE_COMPLETED, stage="triage", position=0, payload={"severity": "HIGH", "confidence": 0.9},
                      now=NOW + timedelta(microseconds=1)),
])
def test_bytes_built_around_encoded_payload_are_to_bytes_exactly(event: EventEnvelope) -> None:
    around = event.to_bytes_around(pydantic_core.to_json(event.payload), pydantic_core.to_json(event.metadata))
    assert around == event.to_bytes()
    assert decode_event(around).event_id == event.event_id
