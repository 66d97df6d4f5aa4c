"""Feedback: record each exception's outcome (resolution time, auto-resolved or not, tool outcomes)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from pipeline.events import EventEnvelope, EventType
from pipeline.stages.base import BatchState, Emission, Stage, require_exception
from pipeline.storage import bulk, schema


class FeedbackStage(Stage):
    name = "feedback"
    accepts = frozenset({EventType.PLAYBOOK_COMPLETED, EventType.EXCEPTION_ESCALATED})
    exception_columns = ("created_at", "resolved_at", "exception_type", "severity", "playbook_id")

    async def load(self, connection: Any, events: list[EventEnvelope], state: BatchState) -> None:
        await super().load(connection, events, state)
        keys = sorted({(event.tenant_id, event.exception_id) for event in events})
        outcomes: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
        rows = await bulk.select_by_keys(
            connection, schema.tool_executions, ("tenant_id", "exception_id"), keys,
            columns=("tenant_id", "exception_id", "tool_name", "outcome", "step_index"), order_by=("step_index",),
        )
        for row in rows:
            outcomes[(row.tenant_id, row.exception_id)][f"{row.step_index}:{row.tool_name}"] = row.outcome
        state.prepared["tool_outcomes"] = outcomes

    async def handle(self, event: EventEnvelope, state: BatchState) -> list[Emission]:
        exception = require_exception(event, state)
        key = (event.tenant_id, event.exception_id)
        if event.event_type is EventType.EXCEPTION_ESCALATED:
            outcome = "escalated" if event.payload.get("actionable", True) else "non_actionable"
            approved = None
        else:
            outcome = {"completed": event.payload.get("exception_status", "resolved"), "rejected": "rejected"}.get(
                event.payload["outcome"], "failed"
            )
            approved = event.payload.get("approved")
        auto_resolved = outcome == "resolved" and approved is None
        resolved_at = exception.get("resolved_at")
        end = resolved_at or state.now
        resolution_time_s = (end - exception["created_at"]).total_seconds() if exception.get("created_at") else None
        tool_outcomes = state.prepared["tool_outcomes"].get(key, {})
        row = {
            "tenant_id": event.tenant_id,
            "exception_id": event.exception_id,
            "outcome": outcome,
            "auto_resolved": auto_resolved,
            "resolution_time_s": resolution_time_s,
            "exception_type": exception.get("exception_type"),
            "severity": exception.get("severity"),
            "playbook_id": exception.get("playbook_id"),
            "tool_outcomes": tool_outcomes,
            "recorded_at": state.now,
        }
        state.insert(schema.feedback, row)
        return [
            Emission(
                EventType.FEEDBACK_CAPTURED,
                {k: v for k, v in row.items() if k not in ("tenant_id", "exception_id", "recorded_at")},
            )
        ]
