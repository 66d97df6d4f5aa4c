"""Built-in tools: the registry, the shared date and check-digit helpers, and the generic tools."""

from __future__ import annotations

from datetime import date

from pipeline.tools import BUILTIN_TOOLS, ToolContext
from pipeline.tools.builtin import (
    add_business_days,
    business_days_between,
    cusip_check_digit,
    isin_check_digit,
    luhn_check_digit,
)
from tests.unit.builtin_tool_cases import NOW, run


def test_registry_names_every_tool_by_its_function_name() -> None:
    assert sorted(BUILTIN_TOOLS) == [
        "check_authorization_requirement",
        "check_eligibility_window",
        "check_reporting_deadline",
        "check_therapy_overlap",
        "compare_trade_economics",
        "compute_cob_liability",
        "compute_entitlement",
        "compute_timely_filing",
        "create_ticket",
        "detect_duplicate_claim",
        "reconcile_cash_balance",
        "reconcile_position",
        "reschedule_settlement",
        "validate_claim_codes",
        "validate_security_identifiers",
        "verify_provider_credentials",
    ]
    assert all(BUILTIN_TOOLS[name].__name__ == name for name in BUILTIN_TOOLS)


def test_check_digit_helpers_match_published_identifiers() -> None:
    assert isin_check_digit("US037833100") == 5  # Apple
    assert isin_check_digit("DE000716460") == 0  # SAP
    assert isin_check_digit("US02079K305") == 9  # Alphabet: letters inside the payload
    assert cusip_check_digit("03783310") == 0
    assert cusip_check_digit("38141G10") == 4  # Goldman Sachs Group
    assert luhn_check_digit("80840123456789") == 3  # NPI 1234567893 (CMS example)


def test_business_day_helpers_skip_weekends() -> None:
    assert add_business_days(date(2025, 6, 6), 1) == date(2025, 6, 9)  # Friday -> Monday
    assert add_business_days(date(2025, 5, 28), 3) == date(2025, 6, 2)
    assert business_days_between(date(2025, 5, 30), date(2025, 6, 2)) == 1
    assert business_days_between(date(2025, 6, 4), date(2025, 6, 2)) == 0


TICKET = {"exception_id": "EXC-1", "tenant_id": "FIN_ACME", "queue": "recs-positions", "severity": "HIGH"}


def test_create_ticket_reference_derives_from_the_execution_id() -> None:
    data = {**TICKET, "summary": "Position break on DE0007164600 at Clearstream"}
    assert run("create_ticket", data) == {
        "outcome": "succeeded",
        "ticket_ref": "TKT-9381F094B5",
        "queue": "recs-positions",
        "due_by": "2025-06-05T14:00:00+00:00",
    }
    retry = ToolContext(tenant_id="FIN_ACME", exception_id="EXC-1", execution_id="exec-0001", now=NOW)
    other = ToolContext(tenant_id="FIN_ACME", exception_id="EXC-1", execution_id="exec-0002", now=NOW)
    assert run("create_ticket", data, retry)["ticket_ref"] == "TKT-9381F094B5"
    assert run("create_ticket", data, other)["ticket_ref"] == "TKT-F37CFE41F4"


def test_create_ticket_refuses_a_summary_with_personal_data() -> None:
    data = {**TICKET, "summary": "Client jane.doe@example.com, IBAN GB33WEST94474702616585, SSN 900-12-3456"}
    assert run("create_ticket", data) == {
        "outcome": "failed",
        "reason": "summary contains personal data: email, iban, ssn",
    }
