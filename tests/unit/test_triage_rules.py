"""pipeline.triage: the rules backend (hint, keywords, fallback) and severity from the packs."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.packs import PackRegistry, Severity, TenantView
from pipeline.triage import RulesBackend, TriageInput, assess_severity
from pipeline.triage.rules import canonical_type


@pytest.fixture(scope="module")
def acme(packs: PackRegistry) -> TenantView:
    return packs.view("FIN_ACME")


@pytest.fixture(scope="module")
def globex(packs: PackRegistry) -> TenantView:
    return packs.view("FIN_GLOBEX")


@pytest.fixture(scope="module")
def meridian(packs: PackRegistry) -> TenantView:
    return packs.view("HC_MERIDIAN")


def classify(tenant: TenantView, description: str, hint: str | None = None) -> tuple[str, float, str]:
    decision = RulesBackend().classify_one(TriageInput(tenant, "EXC-1", hint, description))
    assert (decision.backend, decision.model) == ("rules", "pack-rules")
    return decision.exception_type, decision.confidence, decision.rationale


# --- type hints -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        ("FAIL_TO_DELIVER", "SETTLEMENT_FAIL"),
        ("settlement-failure", "SETTLEMENT_FAIL"),
        ("Settlement Fail", "SETTLEMENT_FAIL"),
        ("cash_break", "CASH_BREAK"),
        ("TRADE_MISMATCH", "TRADE_MISMATCH"),
        ("tr-nack", "REGULATORY_REPORT_REJECTION"),
    ],
)
def test_alias_hint_maps_to_the_canonical_type(acme: TenantView, hint: str, expected: str) -> None:
    # The description points elsewhere: the hint wins.
    exception_type, confidence, rationale = classify(acme, "nostro cash break on the bank statement", hint)
    assert (exception_type, confidence) == (expected, 0.95)
    assert rationale == f"source type hint {hint!r} maps to {expected}"


def test_alias_hint_in_the_healthcare_pack(meridian: TenantView) -> None:
    assert classify(meridian, "", "NO_PRIOR_AUTH")[:2] == ("MISSING_AUTHORIZATION", 0.95)
    assert canonical_type(meridian, "FAIL_TO_DELIVER") is None  # a finance alias means nothing here


def test_unknown_hint_falls_back_to_keywords(acme: TenantView) -> None:
    exception_type, confidence, _ = classify(
        acme, "Trade failed to settle: lack of securities", "WEIRD_THING"
    )
    assert (exception_type, confidence) == ("SETTLEMENT_FAIL", 0.85)



def test_a_hint_two_types_claim_goes_to_the_first_in_pack_order(acme: TenantView) -> None:
    types = dict(acme.domain.exception_types)
    first, second = list(types)[:2]
    types[second] = types[second].model_copy(update={"aliases": (*types[second].aliases, "shared-hint")})
    types[first] = types[first].model_copy(update={"aliases": (*types[first].aliases, "Shared Hint")})
    edited = TenantView(acme.tenant, acme.domain.model_copy(update={"exception_types": types}))
    assert canonical_type(edited, "SHARED_HINT") == first


def test_a_reloaded_pack_is_classified_by_its_own_aliases_and_keywords(acme: TenantView) -> None:
    """The rules backend prepares each pack's aliases and keywords once; a pack loaded again under the
    same name (an operator's edit) must not be classified by the old ones."""
    assert classify(acme, "", "brand-new-hint")[0] == "UNCLASSIFIED_FINANCE"
    types = dict(acme.domain.exception_types)
    spec = types["CASH_BREAK"]
    types["CASH_BREAK"] = spec.model_copy(update={"aliases": ("brand-new-hint",), "keywords": ("gremlin",)})
    reloaded = TenantView(acme.tenant, acme.domain.model_copy(update={"exception_types": types}))
    assert classify(reloaded, "", "brand-new-hint")[:2] == ("CASH_BREAK", 0.95)
    assert classify(reloaded, "a gremlin in the ledger")[0] == "CASH_BREAK"
    assert classify(reloaded, "", "FAIL_TO_DELIVER")[0] == "SETTLEMENT_FAIL"  # the other types' aliases remain
    assert classify(acme, "", "brand-new-hint")[0] == "UNCLASSIFIED_FINANCE"


# --- keyword scoring --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tenant_id", "description", "expected", "confidence"),
    [
        (
            "FIN_ACME",
            "Trade TRD-1 failed to settle at Euroclear: lack of securities, CSDR penalty accruing",
            "SETTLEMENT_FAIL",
            0.9,
        ),
        (
            "FIN_ACME",
            "Nostro break on account 4412: bank statement shows USD 1.2m more than the ledger balance",
            "CASH_BREAK",
            0.9,
        ),
        (
            "HC_MERIDIAN",
            "Claim CLM-1 denied: no authorization on file for the MRI, prior authorization required",
            "MISSING_AUTHORIZATION",
            0.85,
        ),
        (
            "HC_MERIDIAN",
            "Member not found on the eligibility file, coverage terminated last month",
            "ELIGIBILITY_LAPSE",
            0.9,
        ),
    ],
)
def test_keywords_pick_the_type_of_a_clear_description(
    packs: PackRegistry, tenant_id: str, description: str, expected: str, confidence: float
) -> None:
    exception_type, got_confidence, rationale = classify(packs.view(tenant_id), description)
    assert (exception_type, got_confidence) == (expected, confidence)
    assert rationale.endswith(f"keyword(s) of {expected} in the description")


def test_runner_up_lowers_confidence_and_is_named(acme: TenantView) -> None:
    # 3 POSITION_BREAK keywords, 1 CASH_BREAK keyword: 0.45 + 0.3 + 0.2 = 0.95, capped at 0.9.
    exception_type, confidence, rationale = classify(
        acme, "Position break: custodian position differs from stock record; also a cash break"
    )
    assert (exception_type, confidence) == ("POSITION_BREAK", 0.9)
    assert rationale == "3 keyword(s) of POSITION_BREAK in the description (runner-up CASH_BREAK with 1)"


def test_a_tie_goes_to_the_first_name_with_low_confidence(acme: TenantView) -> None:
    # One keyword each: 0.45 + 0.1 + 0 = 0.55, below the finance pack's 0.6 approval bar.
    assert classify(acme, "a cash break and a position break")[:2] == ("CASH_BREAK", 0.55)


def test_keywords_match_whole_words_only(acme: TenantView) -> None:
    # "dvp" is a SETTLEMENT_FAIL keyword; "dvpx" and "csat" must not count.
    assert classify(acme, "dvpx csat report")[:2] == ("UNCLASSIFIED_FINANCE", 0.3)


def test_nothing_matches_gives_the_fallback_type(acme: TenantView, meridian: TenantView) -> None:
    assert classify(acme, "The coffee machine on floor 3 is broken") == (
        "UNCLASSIFIED_FINANCE",
        0.3,
        "no type hint and no keyword matched: fallback type",
    )
    assert classify(meridian, "")[:2] == ("UNCLASSIFIED_HEALTHCARE", 0.3)


def test_classify_keeps_batch_order(acme: TenantView, meridian: TenantView) -> None:
    batch = [
        TriageInput(acme, "A", None, "nothing to see"),
        TriageInput(meridian, "B", "COB", ""),
        TriageInput(acme, "C", "STL_FAIL", ""),
    ]
    decisions = RulesBackend().classify(batch)
    assert [d.exception_type for d in decisions] == [
        "UNCLASSIFIED_FINANCE",
        "COORDINATION_OF_BENEFITS",
        "SETTLEMENT_FAIL",
    ]


# --- severity ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exception_type", "attributes", "description", "severity", "rules"),
    [
        ("SETTLEMENT_FAIL", {}, "", Severity.MEDIUM, []),
        (
            "SETTLEMENT_FAIL",
            {"amount": "12,000,000"},
            "",
            Severity.CRITICAL,
            ["large_settlement_or_cash_break"],
        ),
        (
            "SETTLEMENT_FAIL",
            {"amount": 10_000_000},
            "",
            Severity.CRITICAL,
            ["large_settlement_or_cash_break"],
        ),
        ("SETTLEMENT_FAIL", {"amount": 2_000_000}, "", Severity.HIGH, ["million_plus_amount"]),
        ("SETTLEMENT_FAIL", {"amount": 999_999}, "", Severity.MEDIUM, []),
        ("SETTLEMENT_FAIL", {}, "Buy-in notice threatened", Severity.HIGH, ["settlement_buy_in_risk"]),
        ("TRADE_MISMATCH", {"counterparty_tier": "TIER_1"}, "", Severity.HIGH, ["tier_one_counterparty"]),
        (
            "REGULATORY_REPORT_REJECTION",
            {"days_outstanding": 2},
            "",
            Severity.CRITICAL,
            ["overdue_regulatory_rejection"],
        ),
        ("MARGIN_CALL_DISPUTE", {"amount": 30_000_000}, "", Severity.CRITICAL, ["large_margin_dispute"]),
        ("CASH_BREAK", {"amount": 5_000}, "", Severity.LOW, ["immaterial_break"]),
        ("POSITION_BREAK", {"days_outstanding": 5}, "", Severity.HIGH, ["aged_break"]),
        # raise_to first, then a set_to rule replaces the severity and ends the evaluation.
        (
            "CASH_BREAK",
            {"amount": 5_000, "days_outstanding": 6},
            "",
            Severity.LOW,
            ["aged_break", "immaterial_break"],
        ),
        # raise_to never lowers: a HIGH type stays HIGH and the rule is not reported.
        ("REGULATORY_REPORT_REJECTION", {"amount": 2_000_000}, "", Severity.HIGH, []),
    ],
)
def test_finance_severity_rules(
    acme: TenantView,
    exception_type: str,
    attributes: dict[str, Any],
    description: str,
    severity: Severity,
    rules: list[str],
) -> None:
    assert assess_severity(acme, exception_type, attributes, description) == (severity, rules)


def test_healthcare_severity_rules(meridian: TenantView) -> None:
    assert assess_severity(meridian, "DUPLICATE_THERAPY", {"drug_class": "opioid"}, "") == (
        Severity.CRITICAL,
        ["controlled_or_high_risk_duplicate_therapy"],
    )
    assert assess_severity(meridian, "MISSING_AUTHORIZATION", {}, "Inpatient stay, no auth") == (
        Severity.HIGH,
        ["urgent_care_setting"],
    )
    assert assess_severity(meridian, "CODE_MISMATCH", {"billed_amount": "480.00"}, "") == (
        Severity.LOW,
        ["low_dollar_claim"],
    )


def test_tenant_override_of_default_severity(acme: TenantView, globex: TenantView) -> None:
    # FIN_GLOBEX overrides POSITION_BREAK to HIGH and SECURITY_MASTER_MISMATCH to MEDIUM.
    assert assess_severity(acme, "POSITION_BREAK", {}, "") == (Severity.MEDIUM, [])
    assert assess_severity(globex, "POSITION_BREAK", {}, "") == (Severity.HIGH, [])
    assert assess_severity(acme, "SECURITY_MASTER_MISMATCH", {}, "") == (Severity.LOW, [])
    assert assess_severity(globex, "SECURITY_MASTER_MISMATCH", {}, "") == (Severity.MEDIUM, [])
    # Rules still apply on top of the override.
    assert assess_severity(globex, "POSITION_BREAK", {"amount": 500}, "") == (
        Severity.LOW,
        ["immaterial_break"],
    )


def test_unknown_type_takes_the_fallback_default(acme: TenantView) -> None:
    assert acme.default_severity("NOT_A_TYPE") == Severity.MEDIUM


def test_sla_minutes_with_tenant_overrides(
    acme: TenantView, globex: TenantView, meridian: TenantView
) -> None:
    assert [acme.sla_minutes(s) for s in Severity] == [4320, 1440, 240, 60]
    assert [globex.sla_minutes(s) for s in Severity] == [4320, 1440, 120, 30]
    assert meridian.sla_minutes(Severity.HIGH) == 720
    assert meridian.sla_minutes(Severity.CRITICAL) == 240
