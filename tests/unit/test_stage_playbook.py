"""pipeline.stages.playbook: a bundled playbook run end to end, one hand-built event at a time.

Each event is handled in a fresh BatchState that shares the rows of the previous one, as a new
batch would find them after `load`. The playbook is FIN_ACME's `settlement_fail_recovery`:
assign_owner, call_tool reschedule_settlement, notify, add_comment, set_status resolved.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.errors import ToolInputError, UnexpectedEventError
from pipeline.events import EventEnvelope, EventType
from pipeline.packs import PackRegistry
from pipeline.settings import Settings
from pipeline.stages import BatchState, Emission, PlaybookStage
from tests.unit.loaded_rows import LoadedColumnsOnly

T0 = datetime(2025, 6, 5, 9, 30, tzinfo=UTC)
KEY = ("FIN_ACME", "EXC-1")
PLAYBOOK = "settlement_fail_recovery"
ATTRIBUTES = {
    "trade_id": "TRD-20250603-00412",
    "intended_settlement_date": "2025-06-03",
    "csd": "EUROCLEAR",
    "amount": 2_000_000,
}
TOOL_INPUT = {
    "trade_id": "TRD-20250603-00412",
    "intended_settlement_date": "2025-06-03",
    "csd": "EUROCLEAR",
    "max_fail_days": 4,
}


@pytest.fixture
def stage(settings: Settings, packs: PackRegistry) -> PlaybookStage:
    return PlaybookStage(settings, packs)


def first_batch(**columns: Any) -> BatchState:
    """The exception as `load` fetches it for this stage: reading a column it does not load fails."""
    state = BatchState(now=T0)
    state.exceptions[KEY] = LoadedColumnsOnly(PlaybookStage, {
        "tenant_id": "FIN_ACME",
        "exception_id": "EXC-1",
        "status": "in_progress",
        "exception_type": "SETTLEMENT_FAIL",
        "severity": "HIGH",
        "source_system": "murex",
        "attributes": dict(ATTRIBUTES),
        "resolved_at": None,
        **columns,
    })
    return state


def next_batch(previous: BatchState, minutes: int) -> BatchState:
    return BatchState(
        now=T0 + timedelta(minutes=minutes),
        exceptions=previous.exceptions,
        playbook_runs=previous.playbook_runs,
    )


def event(event_type: EventType, payload: dict[str, Any], event_id: str) -> EventEnvelope:
    return EventEnvelope(
        event_id=event_id,
        event_type=event_type,
        tenant_id="FIN_ACME",
        exception_id="EXC-1",
        timestamp=T0,
        payload=payload,
    )


def matched(approval_required: bool = False) -> EventEnvelope:
    return event(
        EventType.PLAYBOOK_MATCHED,
        {
            "playbook_id": PLAYBOOK,
            "approval_required": approval_required,
            "exception_type": "SETTLEMENT_FAIL",
            "severity": "HIGH",
        },
        "evt-matched",
    )


def tool_completed(
    step_index: int = 1, outcome: str = "succeeded", event_id: str = "evt-tool-done"
) -> EventEnvelope:
    return event(
        EventType.TOOL_EXECUTION_COMPLETED,
        {
            "execution_id": "evt-tool-request",
            "playbook_id": PLAYBOOK,
            "step_index": step_index,
            "tool": "reschedule_settlement",
            "outcome": outcome,
            "output": {"outcome": outcome},
            "duration_ms": 0.2,
        },
        event_id,
    )


def approval(approved: bool) -> EventEnvelope:
    return event(
        EventType.APPROVAL_DECIDED,
        {"approved": approved, "decided_by": "ops.lead", "comment": "checked"},
        "evt-approval",
    )


TOOL_REQUEST = Emission(
    EventType.TOOL_EXECUTION_REQUESTED,
    {"playbook_id": PLAYBOOK, "step_index": 1, "tool": "reschedule_settlement", "input": TOOL_INPUT},
)


async def test_safe_steps_run_then_the_tool_is_requested_with_rendered_input(stage: PlaybookStage) -> None:
    state = first_batch()
    assert await stage.handle(matched(), state) == [TOOL_REQUEST]

    run = state.playbook_runs[KEY]
    assert (run["status"], run["next_step"], run["approval_required"], run["approved"]) == (
        "waiting_tool",
        1,
        False,
        None,
    )
    assert run["started_at"] == T0
    assert run["step_results"] == [
        {"step": 0, "action": "assign_owner", "outcome": "succeeded", "owner": "settlements-ops"}
    ]
    assert state.exceptions[KEY]["owner"] == "settlements-ops"
    assert state._dirty_exception_columns[KEY] == {"owner"}
    assert state._dirty_playbook_runs == {KEY}


async def test_tool_success_runs_to_resolution(stage: PlaybookStage) -> None:
    state = first_batch()
    await stage.handle(matched(), state)

    later = next_batch(state, minutes=2)
    emissions = await stage.handle(tool_completed(), later)

    resolved_at = T0 + timedelta(minutes=2)
    assert emissions == [
        Emission(
            EventType.PLAYBOOK_COMPLETED,
            {
                "playbook_id": PLAYBOOK,
                "outcome": "completed",
                "exception_status": "resolved",
                "reason": "all steps done",
                "steps_run": 5,
                "approved": None,
            },
        ),
        Emission(
            EventType.EXCEPTION_RESOLVED, {"resolved_at": resolved_at.isoformat(), "playbook_id": PLAYBOOK}
        ),
    ]
    run = later.playbook_runs[KEY]
    assert (run["status"], run["next_step"], run["completed_at"]) == ("completed", 5, resolved_at)
    assert [result["action"] for result in run["step_results"]] == [
        "assign_owner",
        "call_tool",
        "notify",
        "add_comment",
        "set_status",
    ]
    assert run["step_results"][1] == {
        "step": 1,
        "action": "call_tool",
        "tool": "reschedule_settlement",
        "outcome": "succeeded",
        "execution_id": "evt-tool-request",
    }
    assert (
        run["step_results"][2]["message"]
        == "Settlement fail TRD-20250603-00412 at EUROCLEAR re-instructed (HIGH)"
    )
    assert run["step_results"][3]["comment"].startswith("Fail re-instructed for the next business day")
    exception = later.exceptions[KEY]
    assert (exception["status"], exception["resolved_at"]) == ("resolved", resolved_at)
    assert later._dirty_exception_columns[KEY] == {"status", "resolved_at"}


async def test_stale_or_duplicate_tool_completion_emits_nothing(stage: PlaybookStage) -> None:
    state = first_batch()
    await stage.handle(matched(), state)
    waiting = dict(state.playbook_runs[KEY])

    later = next_batch(state, minutes=1)
    assert await stage.handle(tool_completed(step_index=3, event_id="evt-stale"), later) == []
    assert await stage.handle(tool_completed(step_index=0, event_id="evt-stale-2"), later) == []
    assert later.playbook_runs[KEY] == waiting
    assert later._dirty_playbook_runs == set()

    await stage.handle(tool_completed(), later)
    assert later.playbook_runs[KEY]["status"] == "completed"
    # The same completion redelivered after the run finished changes nothing.
    again = next_batch(later, minutes=5)
    assert await stage.handle(tool_completed(), again) == []
    assert again._dirty_playbook_runs == set()


async def test_duplicate_match_while_running_is_ignored(stage: PlaybookStage) -> None:
    state = first_batch()
    await stage.handle(matched(), state)
    later = next_batch(state, minutes=1)
    assert await stage.handle(matched(), later) == []
    assert later.playbook_runs[KEY]["status"] == "waiting_tool"


async def test_failed_tool_fails_the_run_and_escalates(stage: PlaybookStage) -> None:
    state = first_batch()
    await stage.handle(matched(), state)

    later = next_batch(state, minutes=1)
    emissions = await stage.handle(tool_completed(outcome="failed"), later)

    assert emissions == [
        Emission(
            EventType.PLAYBOOK_COMPLETED,
            {
                "playbook_id": PLAYBOOK,
                "outcome": "failed",
                "exception_status": "escalated",
                "reason": "tool reschedule_settlement failed",
                "steps_run": 2,
                "approved": None,
            },
        )
    ]
    run = later.playbook_runs[KEY]
    assert (run["status"], run["next_step"], run["completed_at"]) == ("failed", 1, T0 + timedelta(minutes=1))
    assert later.exceptions[KEY]["status"] == "escalated"
    assert later.exceptions[KEY]["resolved_at"] is None


async def test_approval_required_stops_before_the_first_tool_call(stage: PlaybookStage) -> None:
    state = first_batch()
    assert await stage.handle(matched(approval_required=True), state) == []

    run = state.playbook_runs[KEY]
    assert (run["status"], run["next_step"], run["approval_required"], run["approved"]) == (
        "awaiting_approval",
        1,
        True,
        None,
    )
    assert [result["action"] for result in run["step_results"]] == ["assign_owner"]
    assert state.exceptions[KEY]["status"] == "awaiting_approval"
    assert state.exceptions[KEY]["owner"] == "settlements-ops"


async def test_approval_resumes_the_run(stage: PlaybookStage) -> None:
    state = first_batch()
    await stage.handle(matched(approval_required=True), state)

    approved = next_batch(state, minutes=30)
    assert await stage.handle(approval(True), approved) == [TOOL_REQUEST]
    run = approved.playbook_runs[KEY]
    assert (run["status"], run["next_step"], run["approved"]) == ("waiting_tool", 1, True)
    assert run["step_results"][-1] == {
        "step": 1,
        "action": "approval",
        "approved": True,
        "decided_by": "ops.lead",
        "comment": "checked",
    }
    # A second decision for the same run is ignored.
    assert await stage.handle(approval(False), approved) == []

    done = next_batch(approved, minutes=31)
    emissions = await stage.handle(tool_completed(), done)
    assert [emission.event_type for emission in emissions] == [
        EventType.PLAYBOOK_COMPLETED,
        EventType.EXCEPTION_RESOLVED,
    ]
    assert emissions[0].payload["approved"] is True
    assert emissions[0].payload["exception_status"] == "resolved"
    assert emissions[0].payload["steps_run"] == 6  # five steps and the approval
    assert done.exceptions[KEY]["status"] == "resolved"


async def test_approved_exception_is_no_longer_awaiting_approval(stage: PlaybookStage) -> None:
    state = first_batch()
    await stage.handle(matched(approval_required=True), state)
    approved = next_batch(state, minutes=30)
    await stage.handle(approval(True), approved)
    assert approved.playbook_runs[KEY]["status"] == "waiting_tool"
    assert approved.exceptions[KEY]["status"] == "in_progress"


async def test_rejection_ends_the_run(stage: PlaybookStage) -> None:
    state = first_batch()
    await stage.handle(matched(approval_required=True), state)

    rejected = next_batch(state, minutes=30)
    emissions = await stage.handle(approval(False), rejected)
    assert emissions == [
        Emission(
            EventType.PLAYBOOK_COMPLETED,
            {
                "playbook_id": PLAYBOOK,
                "outcome": "rejected",
                "exception_status": "rejected",
                "reason": "approval rejected",
                "steps_run": 2,
                "approved": False,
            },
        )
    ]
    run = rejected.playbook_runs[KEY]
    assert (run["status"], run["approved"], run["next_step"]) == ("rejected", False, 1)
    assert rejected.exceptions[KEY]["status"] == "rejected"


async def test_approval_for_a_run_that_never_asked_is_ignored(stage: PlaybookStage) -> None:
    state = first_batch()
    await stage.handle(matched(), state)
    assert await stage.handle(approval(True), next_batch(state, minutes=1)) == []
    assert state.playbook_runs[KEY]["approved"] is None


async def test_tool_completion_without_a_run_is_unexpected(stage: PlaybookStage) -> None:
    with pytest.raises(UnexpectedEventError, match="which has no playbook run"):
        await stage.handle(tool_completed(), first_batch())


async def test_event_for_an_unknown_exception_is_unexpected(stage: PlaybookStage) -> None:
    with pytest.raises(UnexpectedEventError, match="which intake never recorded"):
        await stage.handle(matched(), BatchState(now=T0))


async def test_unknown_playbook_is_unexpected(stage: PlaybookStage) -> None:
    bogus = event(EventType.PLAYBOOK_MATCHED, {"playbook_id": "launch_rockets"}, "evt-bogus")
    with pytest.raises(UnexpectedEventError, match="'launch_rockets' is not in the finance pack"):
        await stage.handle(bogus, first_batch())


async def test_missing_template_value_names_the_key(stage: PlaybookStage) -> None:
    state = first_batch(attributes={"trade_id": "TRD-1", "csd": "DTC"})
    with pytest.raises(
        ToolInputError,
        match=r"settlement_fail_recovery step 1 \(reschedule_settlement\).*'attributes.intended_settlement_date'",
    ):
        await stage.handle(matched(), state)
