"""Policy: the tenant's guardrails decide whether an exception is actionable, needs a human's
approval, or is escalated, and which playbook handles it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.events import EventEnvelope, EventType
from pipeline.packs import Severity, TenantView
from pipeline.packs.conditions import matches
from pipeline.stages.base import BatchState, Emission, Stage, require_exception


@dataclass(frozen=True)
class PolicyDecision:
    actionable: bool
    escalated: bool
    approval_required: bool
    playbook_id: str | None
    reasons: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if not self.actionable:
            return "non_actionable"
        return "escalated" if self.escalated else "in_progress"


def evaluate_policy(
    tenant: TenantView, exception_type: str, severity: Severity, confidence: float, attributes: dict[str, Any], description: str
) -> PolicyDecision:
    guardrails = tenant.domain.guardrails
    if exception_type in guardrails.non_actionable_types:
        return PolicyDecision(False, False, False, None, [f"{exception_type} is non-actionable for this domain"])
    playbook_id = tenant.playbook_id_for(exception_type)
    if exception_type in guardrails.escalate_types:
        return PolicyDecision(True, True, False, None, [f"{exception_type} always goes to a human"])
    if playbook_id is None:
        return PolicyDecision(True, True, False, None, [f"no playbook handles {exception_type}"])
    reasons = []
    if severity in guardrails.approval_severities:
        reasons.append(f"severity {severity.value} needs approval")
    if confidence < tenant.min_confidence:
        reasons.append(f"confidence {confidence:.2f} is below the tenant threshold {tenant.min_confidence:.2f}")
    if severity.rank > guardrails.max_auto_resolve_severity.rank:
        reasons.append(f"severity {severity.value} is above the auto-resolve ceiling {guardrails.max_auto_resolve_severity.value}")
    for rule in tenant.approval_rules:
        if rule.severities and severity not in rule.severities:
            continue
        if matches(rule.when, exception_type, attributes, description):
            reasons.append(f"tenant approval rule {rule.name}")
    return PolicyDecision(True, False, bool(reasons), playbook_id, reasons)


class PolicyStage(Stage):
    name = "policy"
    accepts = frozenset({EventType.TRIAGE_COMPLETED})
    # What the guardrails and approval rules read. Loading whole rows (rationale, policy_reasons and
    # the rest) made this load the stage's costliest statement in PostgreSQL.
    exception_columns = ("attributes", "description")

    async def handle(self, event: EventEnvelope, state: BatchState) -> list[Emission]:
        row = require_exception(event, state)
        tenant = self.packs.view(event.tenant_id)
        exception_type = event.payload["exception_type"]
        severity = Severity(event.payload["severity"])
        decision = evaluate_policy(
            tenant, exception_type, severity, float(event.payload["confidence"]), row["attributes"] or {}, row["description"] or ""
        )
        state.update_exception(
            (event.tenant_id, event.exception_id),
            status=decision.status,
            actionable=decision.actionable,
            escalated=decision.escalated,
            approval_required=decision.approval_required,
            policy_reasons=decision.reasons,
            playbook_id=decision.playbook_id,
        )
        summary = {
            "actionable": decision.actionable,
            "escalated": decision.escalated,
            "approval_required": decision.approval_required,
            "playbook_id": decision.playbook_id,
            "reasons": decision.reasons,
            "exception_type": exception_type,
            "severity": severity.value,
        }
        emissions = [Emission(EventType.POLICY_EVALUATION_COMPLETED, summary)]
        if decision.playbook_id is not None:
            emissions.append(Emission(EventType.PLAYBOOK_MATCHED, summary))
        else:
            emissions.append(Emission(EventType.EXCEPTION_ESCALATED, summary))
        return emissions
