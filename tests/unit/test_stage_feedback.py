"""pipeline.stages.feedback: each exception's outcome, resolution time and tool outcomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.errors import UnexpectedEventError
from pipeline.events import EventEnvelope, EventType
from pipeline.packs import PackRegistry
from pipeline.settings import Settings
from pipeline.stages import BatchState, Emission, FeedbackStage
from tests.unit.loaded_rows import LoadedColumnsOnly

CREATED = datetime(2025, 6, 5, 9, 0, tzinfo=UTC)
RESOLVED = CREATED + timedelta(minutes=12, seconds=30)
NOW = CREATED + timedelta(minutes=20)
KEY = ("FIN_ACME", "EXC-1")
TOOL_OUTCOMES = {"1:reschedule_settlement": "succeeded"}


@pytest.fixture
def stage(settings: Settings, packs: PackRegistry) -> FeedbackStage:
    return FeedbackStage(settings, packs)


def loaded(resolved_at: datetime | None) -> BatchState:
    """What FeedbackStage.load would leave: the exception row (only the columns the stage loads) and
    the tool outcomes by exception."""
    state = BatchState(now=NOW)
    state.exceptions[KEY] = LoadedColumnsOnly(FeedbackStage, {
        "tenant_id": "FIN_ACME",
        "exception_id": "EXC-1",
        "exception_type": "SETTLEMENT_FAIL",
        "severity": "HIGH",
        "playbook_id": "settlement_fail_recovery",
        "created_at": CREATED,
        "resolved_at": resolved_at,
    })
    state.prepared["tool_outcomes"] = {KEY: dict(TOOL_OUTCOMES)}
    return state


def event(event_type: EventType, payload: dict[str, Any]) -> EventEnvelope:
    return EventEnvelope(
        event_id="evt-1",
        event_type=event_type,
        tenant_id="FIN_ACME",
        exception_id="EXC-1",
        timestamp=NOW,
        payload=payload,
    )


def completed(
    outcome: str = "completed", exception_status: str = "resolved", approved: bool | None = None
) -> EventEnvelope:
    return event(
        EventType.PLAYBOOK_COMPLETED,
        {
            "playbook_id": "settlement_fail_recovery",
            "outcome": outcome,
            "exception_status": exception_status,
            "reason": "all steps done",
            "steps_run": 5,
            "approved": approved,
        },
    )


async def test_completed_playbook_without_approval_is_auto_resolved(stage: FeedbackStage) -> None:
    state = loaded(resolved_at=RESOLVED)
    emissions = await stage.handle(completed(), state)

    expected = {
        "outcome": "resolved",
        "auto_resolved": True,
        "resolution_time_s": 750.0,
        "exception_type": "SETTLEMENT_FAIL",
        "severity": "HIGH",
        "playbook_id": "settlement_fail_recovery",
        "tool_outcomes": TOOL_OUTCOMES,
    }
    assert emissions == [Emission(EventType.FEEDBACK_CAPTURED, expected)]
    assert state._inserts["feedback"] == [
        {**expected, "tenant_id": "FIN_ACME", "exception_id": "EXC-1", "recorded_at": NOW}
    ]


async def test_human_approval_means_not_auto_resolved(stage: FeedbackStage) -> None:
    [emission] = await stage.handle(completed(approved=True), loaded(resolved_at=RESOLVED))
    assert (emission.payload["outcome"], emission.payload["auto_resolved"]) == ("resolved", False)


async def test_escalation_is_timed_until_now(stage: FeedbackStage) -> None:
    escalated = event(
        EventType.EXCEPTION_ESCALATED, {"actionable": True, "escalated": True, "playbook_id": None}
    )
    [emission] = await stage.handle(escalated, loaded(resolved_at=None))
    assert emission.payload["outcome"] == "escalated"
    assert emission.payload["auto_resolved"] is False
    assert emission.payload["resolution_time_s"] == 1200.0


async def test_non_actionable_escalation(stage: FeedbackStage) -> None:
    [emission] = await stage.handle(
        event(EventType.EXCEPTION_ESCALATED, {"actionable": False}), loaded(resolved_at=None)
    )
    assert (emission.payload["outcome"], emission.payload["auto_resolved"]) == ("non_actionable", False)


@pytest.mark.parametrize(
    ("outcome", "exception_status", "approved", "expected"),
    [
        ("rejected", "rejected", False, "rejected"),
        ("failed", "escalated", None, "failed"),
        ("completed", "pending_external", None, "pending_external"),
    ],
)
async def test_other_playbook_outcomes(
    stage: FeedbackStage, outcome: str, exception_status: str, approved: bool | None, expected: str
) -> None:
    [emission] = await stage.handle(completed(outcome, exception_status, approved), loaded(resolved_at=None))
    assert emission.payload["outcome"] == expected
    assert emission.payload["auto_resolved"] is False


async def test_exception_without_tool_executions_records_none(stage: FeedbackStage) -> None:
    state = loaded(resolved_at=RESOLVED)
    state.prepared["tool_outcomes"] = {}
    [emission] = await stage.handle(completed(), state)
    assert emission.payload["tool_outcomes"] == {}


async def test_feedback_for_an_unknown_exception_is_unexpected(stage: FeedbackStage) -> None:
    state = BatchState(now=NOW)
    state.prepared["tool_outcomes"] = {}
    with pytest.raises(UnexpectedEventError):
        await stage.handle(completed(), state)
    assert state._inserts == {}
