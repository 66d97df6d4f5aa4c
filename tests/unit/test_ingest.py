"""pipeline.ingest: the one validation of submitted exceptions (CLI, demo and HTTP ingest)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from pipeline.errors import MissingIdentifierError, TenantSuspendedError, UnknownTenantError, ValidationError
from pipeline.events import EventType
from pipeline.ingest import ingestion_event, parse_submission_line
from pipeline.packs import PackRegistry, TenantPack

NOW = datetime(2025, 6, 5, 9, 30, tzinfo=UTC)
EXCEPTION = {
    "exception_id": "EXC-20250605-0001",
    "description": "DVP failed to settle",
    "source_system": "murex",
}

# --- parse_submission_line --------------------------------------------------------------------------


def test_a_good_line() -> None:
    line = json.dumps({"tenant_id": "FIN_ACME", "exception": EXCEPTION})
    assert parse_submission_line(line) == ("FIN_ACME", EXCEPTION)


def test_missing_keys_come_back_as_none() -> None:
    assert parse_submission_line("{}") == (None, None)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{tenant_id: FIN_ACME}", "not JSON: Expecting property name enclosed in double quotes at column 2"),
        ("", "not JSON"),
        ('[{"tenant_id": "FIN_ACME"}]', "each line must be a JSON object"),
        ('"FIN_ACME"', "each line must be a JSON object"),
        (
            '{"tenant_id": "FIN_ACME", "exception": {}, "priority": 1, "api_key": "x"}',
            "unknown key(s) ['api_key', 'priority']; expected tenant_id and exception",
        ),
    ],
)
def test_bad_lines(line: str, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        parse_submission_line(line)


# --- ingestion_event --------------------------------------------------------------------------------


def ingest(packs: PackRegistry, tenant_id: Any, exception: Any) -> Any:
    return ingestion_event(tenant_id, exception, packs=packs, now=NOW, source="cli")


def test_a_valid_submission_becomes_an_ingested_event(packs: PackRegistry) -> None:
    event = ingest(packs, "FIN_ACME", EXCEPTION)
    assert event.event_type is EventType.EXCEPTION_INGESTED
    assert (event.tenant_id, event.exception_id, event.correlation_id) == (
        "FIN_ACME",
        "EXC-20250605-0001",
        "EXC-20250605-0001",
    )
    assert event.timestamp == NOW
    assert event.payload == EXCEPTION
    assert event.metadata == {"source": "cli"}
    assert event.event_id != ingest(packs, "FIN_ACME", EXCEPTION).event_id  # a fresh id per submission


def test_missing_exception_id_is_generated(packs: PackRegistry) -> None:
    event = ingest(packs, "HC_MERIDIAN", {"description": "claim without auth"})
    assert re.fullmatch(r"EXC-[0-9A-F]{16}", event.exception_id)
    assert event.payload == {"description": "claim without auth", "exception_id": event.exception_id}
    assert ingest(packs, "HC_MERIDIAN", {"exception_id": ""}).exception_id.startswith("EXC-")


def test_unknown_tenant(packs: PackRegistry) -> None:
    with pytest.raises(UnknownTenantError, match="'FIN_NOBODY' is not registered"):
        ingest(packs, "FIN_NOBODY", EXCEPTION)


def test_suspended_tenant(packs: PackRegistry) -> None:
    registry = packs.with_tenant(
        TenantPack(tenant_id="FIN_PAUSED", name="Paused", domain="finance", status="suspended")
    )
    with pytest.raises(TenantSuspendedError, match="FIN_PAUSED is suspended"):
        ingest(registry, "FIN_PAUSED", EXCEPTION)


@pytest.mark.parametrize("tenant_id", [None, "", 42])
def test_missing_tenant(packs: PackRegistry, tenant_id: Any) -> None:
    with pytest.raises(MissingIdentifierError, match="tenant_id is missing"):
        ingest(packs, tenant_id, EXCEPTION)


@pytest.mark.parametrize("exception", [None, "text", ["a"]])
def test_exception_must_be_an_object(packs: PackRegistry, exception: Any) -> None:
    with pytest.raises(ValidationError, match="exception must be a JSON object"):
        ingest(packs, "FIN_ACME", exception)


@pytest.mark.parametrize("exception_id", ["EXC 1", "EXC/1", "ÉXC-1", "x" * 129])
def test_bad_exception_id_characters(packs: PackRegistry, exception_id: str) -> None:
    with pytest.raises(ValidationError, match="^exception_id: ") as info:
        ingest(packs, "FIN_ACME", {"exception_id": exception_id})
    assert type(info.value) is ValidationError


def test_non_string_exception_id(packs: PackRegistry) -> None:
    with pytest.raises(ValidationError, match="exception.exception_id must be a string"):
        ingest(packs, "FIN_ACME", {"exception_id": 12345})
