"""pipeline.stages.triage and pipeline.stages.policy, driven through `prepare`/`handle` on a
hand-filled BatchState (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.errors import UnexpectedEventError
from pipeline.events import EventEnvelope, EventType
from pipeline.packs import PackRegistry, Severity, TenantView
from pipeline.packs.models import Guardrails
from pipeline.settings import Settings
from pipeline.stages import BatchState, Emission, IntakeStage, PolicyStage, TriageStage
from pipeline.stages.policy import PolicyDecision, evaluate_policy
from tests.unit.loaded_rows import LoadedColumnsOnly

NOW = datetime(2025, 6, 5, 9, 30, tzinfo=UTC)
CREATED = NOW - timedelta(minutes=10)


def envelope(
    event_type: EventType, payload: dict[str, Any], *, tenant_id: str = "FIN_ACME", event_id: str = "evt-1"
) -> EventEnvelope:
    return EventEnvelope(
        event_id=event_id,
        event_type=event_type,
        tenant_id=tenant_id,
        exception_id="EXC-1",
        timestamp=NOW,
        payload=payload,
    )


def loaded_exception(tenant_id: str = "FIN_ACME", **columns: Any) -> BatchState:
    """A state as `load` would leave it: one existing exception row."""
    state = BatchState(now=NOW)
    state.exceptions[(tenant_id, "EXC-1")] = {
        "tenant_id": tenant_id,
        "exception_id": "EXC-1",
        "status": "open",
        "description": "",
        "attributes": {},
        "created_at": CREATED,
        **columns,
    }
    return state


# --- triage -----------------------------------------------------------------------------------------


async def triage(stage: TriageStage, event: EventEnvelope, state: BatchState) -> list[Emission]:
    await stage.prepare([event], state)
    return await stage.handle(event, state)


async def test_triage_sets_type_severity_and_sla_deadline(settings: Settings, packs: PackRegistry) -> None:
    state = loaded_exception()
    event = envelope(
        EventType.EXCEPTION_NORMALIZED,
        {
            "type_hint": "FAIL_TO_DELIVER",
            "description": "DVP sale failed",
            "attributes": {"amount": "2,000,000"},
        },
    )
    emissions = await triage(TriageStage(settings, packs), event, state)

    acme = packs.view("FIN_ACME")
    expected_deadline = CREATED + timedelta(minutes=acme.sla_minutes(Severity.HIGH))
    assert expected_deadline == CREATED + timedelta(minutes=240)
    rationale = (
        "source type hint 'FAIL_TO_DELIVER' maps to SETTLEMENT_FAIL; severity rules: million_plus_amount"
    )
    assert emissions == [
        Emission(
            EventType.TRIAGE_COMPLETED,
            {
                "exception_type": "SETTLEMENT_FAIL",
                "severity": "HIGH",
                "confidence": 0.95,
                "rationale": rationale,
                "backend": "rules",
                "model": "pack-rules",
                "sla_deadline": expected_deadline.isoformat(),
                "severity_rules": ["million_plus_amount"],
            },
        )
    ]
    row = state.exceptions[("FIN_ACME", "EXC-1")]
    assert (row["status"], row["exception_type"], row["severity"], row["confidence"]) == (
        "triaged",
        "SETTLEMENT_FAIL",
        "HIGH",
        0.95,
    )
    assert row["sla_deadline"] == expected_deadline
    # SLAImminent is due when a fifth (the default imminent fraction) of the window is left.
    assert row["sla_next_check_at"] == expected_deadline - (expected_deadline - CREATED) * 0.2
    assert row["rationale"] == rationale
    assert state._dirty_exception_columns[("FIN_ACME", "EXC-1")] == {
        "status",
        "exception_type",
        "severity",
        "confidence",
        "rationale",
        "triage_backend",
        "triage_model",
        "sla_deadline",
        "sla_next_check_at",
    }


async def test_triage_uses_the_tenant_sla_override(settings: Settings, packs: PackRegistry) -> None:
    state = loaded_exception("FIN_GLOBEX")
    event = envelope(
        EventType.EXCEPTION_NORMALIZED,
        {
            "type_hint": None,
            "description": "Nostro cash break on the bank statement",
            "attributes": {"amount": 15_000_000},
        },
        tenant_id="FIN_GLOBEX",
    )
    [emission] = await triage(TriageStage(settings, packs), event, state)
    assert emission.payload["exception_type"] == "CASH_BREAK"
    assert emission.payload["severity"] == "CRITICAL"
    globex_critical = packs.view("FIN_GLOBEX").sla_minutes(Severity.CRITICAL)
    assert globex_critical == 30
    assert state.exceptions[("FIN_GLOBEX", "EXC-1")]["sla_deadline"] == CREATED + timedelta(
        minutes=globex_critical
    )


async def test_triage_counts_the_sla_from_now_when_created_at_is_unknown(
    settings: Settings, packs: PackRegistry
) -> None:
    state = loaded_exception(created_at=None)
    event = envelope(EventType.EXCEPTION_NORMALIZED, {"description": "nothing recognisable"})
    [emission] = await triage(TriageStage(settings, packs), event, state)
    assert (emission.payload["exception_type"], emission.payload["severity"]) == (
        "UNCLASSIFIED_FINANCE",
        "MEDIUM",
    )
    assert state.exceptions[("FIN_ACME", "EXC-1")]["sla_deadline"] == NOW + timedelta(minutes=1440)


async def test_triage_reads_only_the_exception_columns_it_loads(settings: Settings, packs: PackRegistry) -> None:
    event = envelope(EventType.EXCEPTION_NORMALIZED, {"type_hint": "FAIL_TO_DELIVER", "description": "DVP sale failed",
                                                      "attributes": {"amount": "2,000,000"}})
    full = loaded_exception()
    narrow = BatchState(now=NOW)
    narrow.exceptions[("FIN_ACME", "EXC-1")] = LoadedColumnsOnly(
        TriageStage, {"tenant_id": "FIN_ACME", "exception_id": "EXC-1", "created_at": CREATED})
    stage = TriageStage(settings, packs)
    assert await triage(stage, event, narrow) == await triage(stage, event, full)
    assert narrow.exceptions[("FIN_ACME", "EXC-1")]["sla_deadline"] == full.exceptions[("FIN_ACME", "EXC-1")]["sla_deadline"]


async def test_triage_of_an_exception_intake_never_saw(settings: Settings, packs: PackRegistry) -> None:
    stage = TriageStage(settings, packs)
    event = envelope(EventType.EXCEPTION_NORMALIZED, {"description": "x"})
    state = BatchState(now=NOW)
    with pytest.raises(UnexpectedEventError, match="which intake never recorded"):
        await triage(stage, event, state)


async def test_intake_then_triage_in_one_batch(settings: Settings, packs: PackRegistry) -> None:
    """The normalised payload intake emits is exactly what triage consumes."""
    state = BatchState(now=NOW)
    ingested = envelope(
        EventType.EXCEPTION_INGESTED,
        {
            "description": "Euroclear: trade failed to settle, lack of securities; buy-in threatened",
            "attributes": {"amount": 50_000},
        },
        event_id="evt-ingest",
    )
    [normalized] = await IntakeStage(settings, packs).handle(ingested, state)
    event = ingested.derive(
        normalized.event_type, stage="intake", position=0, payload=normalized.payload, now=NOW
    )
    [completed] = await triage(TriageStage(settings, packs), event, state)
    assert completed.payload["exception_type"] == "SETTLEMENT_FAIL"
    assert completed.payload["severity"] == "HIGH"
    assert completed.payload["severity_rules"] == ["settlement_buy_in_risk"]
    assert state.exceptions[("FIN_ACME", "EXC-1")]["sla_deadline"] == NOW + timedelta(minutes=240)


# --- evaluate_policy --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def acme(packs: PackRegistry) -> TenantView:
    return packs.view("FIN_ACME")


def policy(
    tenant: TenantView, exception_type: str, severity: Severity, confidence: float = 0.95, **attributes: Any
) -> PolicyDecision:
    return evaluate_policy(tenant, exception_type, severity, confidence, attributes, "")


def test_clear_case_runs_its_playbook_without_approval(acme: TenantView) -> None:
    decision = policy(acme, "SETTLEMENT_FAIL", Severity.MEDIUM)
    assert decision == PolicyDecision(True, False, False, "settlement_fail_recovery", [])
    assert decision.status == "in_progress"


def test_critical_needs_approval(acme: TenantView) -> None:
    decision = policy(acme, "SETTLEMENT_FAIL", Severity.CRITICAL)
    assert decision.approval_required is True
    assert decision.playbook_id == "settlement_fail_recovery"
    assert decision.reasons == [
        "severity CRITICAL needs approval",
        "severity CRITICAL is above the auto-resolve ceiling HIGH",
    ]
    assert decision.status == "in_progress"


def test_confidence_below_the_tenant_threshold_needs_approval(packs: PackRegistry, acme: TenantView) -> None:
    assert policy(acme, "SETTLEMENT_FAIL", Severity.MEDIUM, confidence=0.55).reasons == [
        "confidence 0.55 is below the tenant threshold 0.60"
    ]
    # FIN_GLOBEX raises the bar to 0.75: 0.7 passes at ACME but not at GLOBEX.
    assert policy(acme, "SETTLEMENT_FAIL", Severity.MEDIUM, confidence=0.7).approval_required is False
    globex = policy(packs.view("FIN_GLOBEX"), "SETTLEMENT_FAIL", Severity.MEDIUM, confidence=0.7)
    assert globex.approval_required is True
    assert globex.reasons == ["confidence 0.70 is below the tenant threshold 0.75"]


def test_escalate_types_go_to_a_human(acme: TenantView) -> None:
    decision = policy(acme, "MARGIN_CALL_DISPUTE", Severity.HIGH)
    assert decision == PolicyDecision(True, True, False, None, ["MARGIN_CALL_DISPUTE always goes to a human"])
    assert decision.status == "escalated"


def test_fallback_type_without_playbook_escalates(acme: TenantView) -> None:
    decision = policy(acme, "UNCLASSIFIED_FINANCE", Severity.MEDIUM, confidence=0.3)
    assert decision == PolicyDecision(True, True, False, None, ["no playbook handles UNCLASSIFIED_FINANCE"])


def test_tenant_approval_rules(acme: TenantView) -> None:
    big_cash = policy(acme, "CASH_BREAK", Severity.HIGH, amount="6,000,000")
    assert big_cash.approval_required is True
    assert big_cash.reasons == ["tenant approval rule large_cash_break"]
    assert policy(acme, "CASH_BREAK", Severity.HIGH, amount=4_999_999).approval_required is False
    # tier_one_trade_break only applies at HIGH or CRITICAL.
    assert (
        policy(acme, "TRADE_MISMATCH", Severity.MEDIUM, counterparty_tier="TIER_1").approval_required is False
    )
    assert policy(acme, "TRADE_MISMATCH", Severity.HIGH, counterparty_tier="TIER_1").reasons == [
        "tenant approval rule tier_one_trade_break"
    ]


def test_reasons_accumulate(acme: TenantView) -> None:
    decision = policy(acme, "CASH_BREAK", Severity.CRITICAL, confidence=0.5, amount=20_000_000)
    assert decision.reasons == [
        "severity CRITICAL needs approval",
        "confidence 0.50 is below the tenant threshold 0.60",
        "severity CRITICAL is above the auto-resolve ceiling HIGH",
        "tenant approval rule large_cash_break",
    ]


def test_healthcare_auto_resolve_ceiling_and_rules(packs: PackRegistry) -> None:
    meridian = packs.view("HC_MERIDIAN")
    assert policy(meridian, "CODE_MISMATCH", Severity.HIGH).reasons == [
        "severity HIGH is above the auto-resolve ceiling MEDIUM"
    ]
    assert policy(meridian, "DUPLICATE_THERAPY", Severity.MEDIUM).reasons == [
        "tenant approval rule pharmacist_signs_off_duplicate_therapy"
    ]
    assert policy(meridian, "CODE_MISMATCH", Severity.MEDIUM, billed_amount=150_000).reasons == [
        "tenant approval rule high_dollar_claim"
    ]


def test_tenant_playbook_override(packs: PackRegistry, acme: TenantView) -> None:
    assert policy(acme, "TRADE_MISMATCH", Severity.MEDIUM).playbook_id == "trade_mismatch_affirmation"
    assert (
        policy(packs.view("FIN_GLOBEX"), "TRADE_MISMATCH", Severity.MEDIUM).playbook_id
        == "manual_break_review"
    )


def test_non_actionable_type(packs: PackRegistry) -> None:
    finance = packs.domains["finance"]
    guardrails = Guardrails.model_validate(
        {**finance.guardrails.model_dump(), "non_actionable_types": ("SECURITY_MASTER_MISMATCH",)}
    )
    registry = PackRegistry(
        domains={**packs.domains, "finance": finance.model_copy(update={"guardrails": guardrails})},
        tenants=packs.tenants,
    )
    decision = policy(registry.view("FIN_ACME"), "SECURITY_MASTER_MISMATCH", Severity.LOW)
    assert decision == PolicyDecision(
        False, False, False, None, ["SECURITY_MASTER_MISMATCH is non-actionable for this domain"]
    )
    assert decision.status == "non_actionable"


# --- PolicyStage.handle -----------------------------------------------------------------------------


def loaded_for_policy(**columns: Any) -> BatchState:
    """The exception as `load` fetches it for the policy stage: reading a column it does not load fails."""
    state = BatchState(now=NOW)
    state.exceptions[("FIN_ACME", "EXC-1")] = LoadedColumnsOnly(
        PolicyStage, {"tenant_id": "FIN_ACME", "exception_id": "EXC-1", **columns})
    return state


def triage_completed(exception_type: str, severity: str, confidence: float = 0.95) -> EventEnvelope:
    return envelope(
        EventType.TRIAGE_COMPLETED,
        {"exception_type": exception_type, "severity": severity, "confidence": confidence},
    )


async def test_policy_stage_matches_a_playbook(settings: Settings, packs: PackRegistry) -> None:
    state = loaded_for_policy(attributes={"amount": 6_000_000}, description="Nostro break")
    emissions = await PolicyStage(settings, packs).handle(triage_completed("CASH_BREAK", "HIGH"), state)
    summary = {
        "actionable": True,
        "escalated": False,
        "approval_required": True,
        "playbook_id": "cash_break_reconciliation",
        "reasons": ["tenant approval rule large_cash_break"],
        "exception_type": "CASH_BREAK",
        "severity": "HIGH",
    }
    assert emissions == [
        Emission(EventType.POLICY_EVALUATION_COMPLETED, summary),
        Emission(EventType.PLAYBOOK_MATCHED, summary),
    ]
    row = state.exceptions[("FIN_ACME", "EXC-1")]
    assert (row["status"], row["playbook_id"], row["approval_required"], row["escalated"]) == (
        "in_progress",
        "cash_break_reconciliation",
        True,
        False,
    )
    assert row["policy_reasons"] == ["tenant approval rule large_cash_break"]
    assert state._dirty_exception_columns[("FIN_ACME", "EXC-1")] == {
        "status",
        "actionable",
        "escalated",
        "approval_required",
        "policy_reasons",
        "playbook_id",
    }


async def test_policy_stage_escalates(settings: Settings, packs: PackRegistry) -> None:
    state = loaded_for_policy(attributes=None, description=None)
    emissions = await PolicyStage(settings, packs).handle(
        triage_completed("MARGIN_CALL_DISPUTE", "HIGH"), state
    )
    assert [emission.event_type for emission in emissions] == [
        EventType.POLICY_EVALUATION_COMPLETED,
        EventType.EXCEPTION_ESCALATED,
    ]
    assert emissions[1].payload["escalated"] is True
    assert emissions[1].payload["playbook_id"] is None
    row = state.exceptions[("FIN_ACME", "EXC-1")]
    assert (row["status"], row["escalated"], row["playbook_id"]) == ("escalated", True, None)
