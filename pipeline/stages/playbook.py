"""Playbook: run a playbook's steps in order, resumably.

Safe steps (notify, assign_owner, add_comment, set_status) run inline. A `call_tool` step emits
ToolExecutionRequested and the run waits for ToolExecutionCompleted. When approval is required the
run stops before the first step that changes anything outside the platform (a tool call, a
resolution, or a step marked `requires_approval`) and waits for ApprovalDecided.

Progress lives in `playbook_runs.next_step`, written in the same transaction as the step's effects,
so after a crash the run resumes at the right step and no step runs twice.
"""

from __future__ import annotations

from typing import Any

from pipeline.errors import ToolInputError, UnexpectedEventError
from pipeline.events import EventEnvelope, EventType
from pipeline.packs import TenantView
from pipeline.packs.models import PlaybookStep
from pipeline.stages.base import (
    BatchState,
    Emission,
    ExceptionKey,
    Stage,
    load_playbook_runs,
    require_exception,
)
from pipeline.tools.templates import render_template

FINAL_RUN_STATUSES = frozenset({"completed", "rejected", "failed"})


def needs_approval_gate(step: PlaybookStep) -> bool:
    """Steps that act on the world, or resolve the exception, wait for a human when approval is due."""
    resolves = step.action == "set_status" and step.params.get("status") == "resolved"
    return step.action == "call_tool" or resolves or step.requires_approval


class PlaybookStage(Stage):
    name = "playbook"
    accepts = frozenset({EventType.PLAYBOOK_MATCHED, EventType.TOOL_EXECUTION_COMPLETED, EventType.APPROVAL_DECIDED})
    # The templates' context (`_template_context`) and the statuses a run reads and settles.
    exception_columns = ("status", "resolved_at", "severity", "exception_type", "source_system", "attributes")

    async def load(self, connection: Any, events: list[EventEnvelope], state: BatchState) -> None:
        await super().load(connection, events, state)
        keys = {(event.tenant_id, event.exception_id) for event in events}
        state.playbook_runs.update(await load_playbook_runs(connection, keys))

    async def handle(self, event: EventEnvelope, state: BatchState) -> list[Emission]:
        require_exception(event, state)
        key = (event.tenant_id, event.exception_id)
        tenant = self.packs.view(event.tenant_id)
        if event.event_type is EventType.PLAYBOOK_MATCHED:
            return self._start(key, event, tenant, state)
        run = state.playbook_runs.get(key)
        if run is None:
            raise UnexpectedEventError(f"{event.event_type} for {event.exception_id}, which has no playbook run")
        if event.event_type is EventType.TOOL_EXECUTION_COMPLETED:
            return self._tool_completed(key, run, event, tenant, state)
        return self._approval_decided(key, run, event, tenant, state)

    def _start(self, key: ExceptionKey, event: EventEnvelope, tenant: TenantView, state: BatchState) -> list[Emission]:
        existing = state.playbook_runs.get(key)
        if existing is not None and existing["status"] not in FINAL_RUN_STATUSES:
            return []  # a run is already going for this exception; the match is a late duplicate
        playbook_id = event.payload["playbook_id"]
        if tenant.playbook(playbook_id) is None:
            raise UnexpectedEventError(f"playbook {playbook_id!r} is not in the {tenant.domain.pack} pack")
        run = {
            "tenant_id": key[0],
            "exception_id": key[1],
            "playbook_id": playbook_id,
            "status": "running",
            "next_step": 0,
            "approval_required": bool(event.payload.get("approval_required")),
            "approved": None,
            "step_results": [],
            "started_at": state.now,
            "completed_at": None,
        }
        return self._advance(key, run, tenant, state)

    def _tool_completed(
        self, key: ExceptionKey, run: dict[str, Any], event: EventEnvelope, tenant: TenantView, state: BatchState
    ) -> list[Emission]:
        step_index = int(event.payload["step_index"])
        if run["status"] != "waiting_tool" or step_index != run["next_step"]:
            return []  # stale or duplicate completion: this step is already settled
        outcome = event.payload["outcome"]
        result = {"step": step_index, "action": "call_tool", "tool": event.payload["tool"], "outcome": outcome,
                  "execution_id": event.payload["execution_id"]}
        run = {**run, "step_results": [*run["step_results"], result]}
        if outcome != "succeeded":
            return self._finish(key, run, "failed", state, exception_status="escalated",
                                reason=f"tool {event.payload['tool']} {outcome}")
        run["next_step"] = step_index + 1
        run["status"] = "running"
        return self._advance(key, run, tenant, state)

    def _approval_decided(
        self, key: ExceptionKey, run: dict[str, Any], event: EventEnvelope, tenant: TenantView, state: BatchState
    ) -> list[Emission]:
        if run["status"] != "awaiting_approval":
            return []  # decided already, or never asked
        approved = bool(event.payload["approved"])
        decision = {"step": run["next_step"], "action": "approval", "approved": approved,
                    "decided_by": event.payload.get("decided_by"), "comment": event.payload.get("comment")}
        run = {**run, "approved": approved, "status": "running", "step_results": [*run["step_results"], decision]}
        if not approved:
            return self._finish(key, run, "rejected", state, exception_status="rejected", reason="approval rejected")
        state.update_exception(key, status="in_progress")
        return self._advance(key, run, tenant, state)

    def _advance(self, key: ExceptionKey, run: dict[str, Any], tenant: TenantView, state: BatchState) -> list[Emission]:
        playbook = tenant.playbook(run["playbook_id"])
        assert playbook is not None  # checked when the run started
        emissions: list[Emission] = []
        exception = state.exceptions[key]
        while run["next_step"] < len(playbook.steps):
            index = run["next_step"]
            step = playbook.steps[index]
            if run["approval_required"] and not run["approved"] and needs_approval_gate(step):
                run["status"] = "awaiting_approval"
                state.update_exception(key, status="awaiting_approval")
                state.put_playbook_run(key, run)
                return emissions
            if step.action == "call_tool":
                emissions.append(self._request_tool(key, run, index, step, tenant, exception))
                run["status"] = "waiting_tool"
                state.put_playbook_run(key, run)
                return emissions
            run["step_results"] = [*run["step_results"], self._run_safe_step(key, index, step, state)]
            run["next_step"] = index + 1
        final_status = state.exceptions[key]["status"]
        return emissions + self._finish(key, run, "completed", state, exception_status=final_status, reason="all steps done")

    def _run_safe_step(self, key: ExceptionKey, index: int, step: PlaybookStep, state: BatchState) -> dict[str, Any]:
        result: dict[str, Any] = {"step": index, "action": step.action, "outcome": "succeeded"}
        params = _render_text_params(step.params, _template_context(key, state.exceptions[key]))
        if step.action == "assign_owner":
            owner = params.get("owner") or params.get("team") or "operations"
            state.update_exception(key, owner=str(owner))
            result["owner"] = owner
        elif step.action == "set_status":
            status = step.params["status"]
            changes: dict[str, Any] = {"status": status}
            if status == "resolved":
                changes["resolved_at"] = state.now
            state.update_exception(key, **changes)
            result["status"] = status
        elif step.action == "notify":
            result["channel"] = params.get("channel", "operations")
            result["message"] = params.get("message", "")
        elif step.action == "add_comment":
            result["comment"] = params.get("text", "")
        return result

    def _request_tool(
        self, key: ExceptionKey, run: dict[str, Any], index: int, step: PlaybookStep, tenant: TenantView, exception: dict[str, Any]
    ) -> Emission:
        try:
            tool_input = render_template(step.input, _template_context(key, exception))
        except ToolInputError as error:
            raise ToolInputError(f"playbook {run['playbook_id']} step {index} ({step.tool}): {error}") from error
        return Emission(
            EventType.TOOL_EXECUTION_REQUESTED,
            {"playbook_id": run["playbook_id"], "step_index": index, "tool": step.tool, "input": tool_input},
        )

    def _finish(
        self, key: ExceptionKey, run: dict[str, Any], run_status: str, state: BatchState, *, exception_status: str, reason: str
    ) -> list[Emission]:
        run = {**run, "status": run_status, "completed_at": state.now}
        state.put_playbook_run(key, run)
        exception = state.exceptions[key]
        if exception_status != exception["status"]:
            state.update_exception(key, status=exception_status)
        resolved = exception_status == "resolved"
        summary = {
            "playbook_id": run["playbook_id"],
            "outcome": run_status,
            "exception_status": exception_status,
            "reason": reason,
            "steps_run": len(run["step_results"]),
            "approved": run["approved"],
        }
        emissions = [Emission(EventType.PLAYBOOK_COMPLETED, summary)]
        if resolved:
            resolved_at = exception.get("resolved_at") or state.now
            emissions.append(Emission(EventType.EXCEPTION_RESOLVED, {"resolved_at": resolved_at.isoformat(),
                                                                      "playbook_id": run["playbook_id"]}))
        return emissions


def _template_context(key: ExceptionKey, exception: dict[str, Any]) -> dict[str, Any]:
    return {
        "exception_id": key[1],
        "tenant_id": key[0],
        "severity": exception.get("severity"),
        "exception_type": exception.get("exception_type"),
        "source_system": exception.get("source_system"),
        "attributes": exception.get("attributes") or {},
    }


def _render_text_params(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Messages and comments with their templates filled; a missing value leaves the text as written."""
    rendered = {}
    for name, value in params.items():
        try:
            rendered[name] = render_template(value, context)
        except ToolInputError:
            rendered[name] = value
    return rendered
