"""Built-in tools: one passing and one failing case each, with exact outputs, at a fixed `now`."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest

from pipeline.errors import ToolInputError
from pipeline.tools import BUILTIN_TOOLS, ToolContext
from pipeline.tools.builtin import (
    add_business_days,
    business_days_between,
    cusip_check_digit,
    isin_check_digit,
    luhn_check_digit,
)

NOW = datetime(2025, 6, 4, 14, 0, tzinfo=UTC)  # a Wednesday
CTX = ToolContext(tenant_id="FIN_ACME", exception_id="EXC-1", execution_id="exec-0001", now=NOW)


def run(tool: str, data: dict, ctx: ToolContext = CTX) -> dict:
    result = BUILTIN_TOOLS[tool](data, ctx)
    assert json.loads(json.dumps(result)) == result  # JSON-serialisable as it is
    return result


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


def test_validate_security_identifiers_accepts_apple() -> None:
    assert run("validate_security_identifiers", {"isin": "US0378331005", "cusip": "037833100"}) == {
        "outcome": "succeeded",
        "isin": "US0378331005",
        "isin_valid": True,
        "isin_expected_check_digit": 5,
        "cusip": "037833100",
        "cusip_valid": True,
        "cusip_expected_check_digit": 0,
        "problems": [],
    }


def test_validate_security_identifiers_rejects_a_wrong_isin_check_digit() -> None:
    assert run("validate_security_identifiers", {"isin": "US0378331006"}) == {
        "outcome": "failed",
        "isin": "US0378331006",
        "isin_valid": False,
        "isin_expected_check_digit": 5,
        "problems": ["ISIN check digit is 6, expected 5"],
    }


def test_validate_security_identifiers_rejects_a_cusip_the_isin_does_not_embed() -> None:
    result = run("validate_security_identifiers", {"isin": "US0378331005", "cusip": "594918104"})
    assert result["outcome"] == "failed"
    assert result["cusip_valid"] is True
    assert result["problems"] == ["ISIN US0378331005 does not embed CUSIP 594918104"]


def test_validate_security_identifiers_rejects_a_wrong_cusip_check_digit() -> None:
    result = run("validate_security_identifiers", {"isin": "US0378331005", "cusip": "037833101"})
    assert (result["outcome"], result["cusip_valid"], result["cusip_expected_check_digit"]) == (
        "failed",
        False,
        0,
    )
    assert result["problems"] == [
        "CUSIP check digit is 1, expected 0",
        "ISIN US0378331005 does not embed CUSIP 037833101",
    ]


CASH = {
    "account_id": "NOSTRO-USD-JPM-001",
    "currency": "USD",
    "expected_balance": 1_000_000.0,
    "tolerance": 1.0,
}


def test_reconcile_cash_balance_finds_the_smallest_explaining_items() -> None:
    data = {**CASH, "actual_balance": 1_025_000.0, "open_item_amounts": [-500.0, 20_000.0, 5_000.0, 7.5]}
    assert run("reconcile_cash_balance", data) == {
        "outcome": "succeeded",
        "account_id": "NOSTRO-USD-JPM-001",
        "currency": "USD",
        "break_amount": 25_000.0,
        "explained_by_items": [1, 2],
        "unexplained_amount": 0.0,
    }


def test_reconcile_cash_balance_accepts_a_break_within_tolerance_without_items() -> None:
    result = run("reconcile_cash_balance", {**CASH, "actual_balance": 1_000_000.6})
    assert (result["outcome"], result["explained_by_items"], result["unexplained_amount"]) == (
        "succeeded",
        [],
        0.6,
    )


def test_reconcile_cash_balance_fails_an_unexplained_break() -> None:
    data = {**CASH, "actual_balance": 1_000_250.0, "open_item_amounts": [100.0, 100.0]}
    assert run("reconcile_cash_balance", data) == {
        "outcome": "failed",
        "account_id": "NOSTRO-USD-JPM-001",
        "currency": "USD",
        "break_amount": 250.0,
        "explained_by_items": [],
        "unexplained_amount": 250.0,
    }


POSITION = {
    "isin": "DE0007164600",
    "internal_quantity": 10_500,
    "custodian_quantity": 10_000,
    "tolerance_units": 0,
}


def test_reconcile_position_explained_by_pending_settlements() -> None:
    assert run("reconcile_position", {**POSITION, "pending_settlement_quantity": 500}) == {
        "outcome": "succeeded",
        "isin": "DE0007164600",
        "break_quantity": 500,
        "unexplained_quantity": 0,
    }


def test_reconcile_position_fails_when_pending_settlements_do_not_cover_the_break() -> None:
    assert run("reconcile_position", {**POSITION, "pending_settlement_quantity": 200}) == {
        "outcome": "failed",
        "isin": "DE0007164600",
        "break_quantity": 500,
        "unexplained_quantity": 300,
    }


TRADE = {
    "trade_id": "TRD-20250604-00077",
    "our_quantity": 100_000,
    "their_quantity": 100_000,
    "our_price": 182.35,
    "our_settlement_date": "2025-06-05",
    "their_settlement_date": "2025-06-05",
    "price_tolerance_bps": 5,
}


def test_compare_trade_economics_within_price_tolerance() -> None:
    assert run("compare_trade_economics", {**TRADE, "their_price": 182.40}) == {
        "outcome": "succeeded",
        "trade_id": "TRD-20250604-00077",
        "mismatched_fields": [],
        "price_difference_bps": 2.74,
        "quantity_difference": 0,
    }


def test_compare_trade_economics_lists_every_mismatched_field() -> None:
    data = {**TRADE, "their_price": 182.53, "their_quantity": 90_000, "their_settlement_date": "2025-06-06"}
    assert run("compare_trade_economics", data) == {
        "outcome": "failed",
        "trade_id": "TRD-20250604-00077",
        "mismatched_fields": ["quantity", "price", "settlement_date"],
        "price_difference_bps": 9.87,
        "quantity_difference": 10_000,
    }


def test_reschedule_settlement_moves_a_recent_fail_to_the_next_business_day() -> None:
    data = {
        "trade_id": "MX-7741203",
        "intended_settlement_date": "2025-06-02",
        "csd": "EUROCLEAR",
        "max_fail_days": 4,
    }
    assert run("reschedule_settlement", data) == {
        "outcome": "succeeded",
        "trade_id": "MX-7741203",
        "business_days_late": 2,
        "new_settlement_date": "2025-06-05",
        "csdr_penalty_applies": True,
        "buy_in_due": False,
    }


def test_reschedule_settlement_fails_when_a_buy_in_is_due() -> None:
    data = {
        "trade_id": "MX-7741203",
        "intended_settlement_date": "2025-05-27",
        "csd": "DTC",
        "max_fail_days": 4,
    }
    assert run("reschedule_settlement", data) == {
        "outcome": "failed",
        "trade_id": "MX-7741203",
        "business_days_late": 6,
        "new_settlement_date": "2025-06-05",
        "csdr_penalty_applies": False,
        "buy_in_due": True,
    }


def test_reschedule_settlement_keeps_a_future_settlement_date() -> None:
    data = {
        "trade_id": "MX-7741203",
        "intended_settlement_date": "2025-06-06",
        "csd": "CREST",
        "max_fail_days": 4,
    }
    result = run("reschedule_settlement", data)
    assert (result["business_days_late"], result["new_settlement_date"]) == (0, "2025-06-06")


def test_an_impossible_date_is_a_tool_input_error_naming_the_key() -> None:
    data = {
        "trade_id": "MX-7741203",
        "intended_settlement_date": "2025-02-30",
        "csd": "DTC",
        "max_fail_days": 4,
    }
    with pytest.raises(ToolInputError, match="intended_settlement_date: '2025-02-30' is not a calendar date"):
        run("reschedule_settlement", data)


def test_check_reporting_deadline_on_time() -> None:
    data = {
        "report_id": "REP-88120447",
        "regime": "EMIR",
        "rejection_code": "EMIR-VR-2045",
        "trade_date": "2025-06-03",
    }
    assert run("check_reporting_deadline", data) == {
        "outcome": "succeeded",
        "report_id": "REP-88120447",
        "regime": "EMIR",
        "rejection_code": "EMIR-VR-2045",
        "resubmit_by": "2025-06-04",
        "business_days_overdue": 0,
    }


def test_check_reporting_deadline_overdue_cat_repair() -> None:
    data = {
        "report_id": "REP-10000001",
        "regime": "CAT",
        "rejection_code": "2102",
        "trade_date": "2025-05-28",
    }
    result = run("check_reporting_deadline", data)
    assert (result["outcome"], result["resubmit_by"], result["business_days_overdue"]) == (
        "failed",
        "2025-06-02",
        2,
    )


ENTITLEMENT = {
    "ca_event_id": "CA-2025-DVCA-004417",
    "isin": "US0378331005",
    "holding_quantity": 250_000,
    "rate_per_unit": 0.25,
    "withholding_tax_rate": 0.15,
    "tolerance": 1.0,
}


def test_compute_entitlement_matches_the_payment() -> None:
    assert run("compute_entitlement", {**ENTITLEMENT, "received_amount": 53_125.0}) == {
        "outcome": "succeeded",
        "ca_event_id": "CA-2025-DVCA-004417",
        "expected_gross": 62_500.0,
        "withholding_tax": 9_375.0,
        "expected_net": 53_125.0,
        "difference": 0.0,
    }


def test_compute_entitlement_flags_an_over_withheld_payment() -> None:
    result = run("compute_entitlement", {**ENTITLEMENT, "received_amount": 46_015.63})
    assert (result["outcome"], result["difference"]) == ("failed", -7_109.37)


def claim_codes(icd10: str, cpt: str) -> dict:
    return run(
        "validate_claim_codes", {"claim_id": "CLM-2025-06-0000001", "icd10_code": icd10, "cpt_code": cpt}
    )


def test_validate_claim_codes_accepts_a_supported_pair() -> None:
    assert claim_codes("J18.9", "71046") == {
        "outcome": "succeeded",
        "claim_id": "CLM-2025-06-0000001",
        "icd10_format_valid": True,
        "cpt_format_valid": True,
        "pair_status": "consistent",
    }


def test_validate_claim_codes_rejects_unsupported_and_malformed_codes() -> None:
    assert claim_codes("F32.1", "71046")["pair_status"] == "inconsistent"
    assert claim_codes("I10", "99213")["pair_status"] == "unknown_procedure"
    malformed = claim_codes("M545", "2988")
    assert malformed == {
        "outcome": "failed",
        "claim_id": "CLM-2025-06-0000001",
        "icd10_format_valid": False,
        "cpt_format_valid": False,
        "pair_status": "not_checked",
    }
    assert claim_codes("C4A.9", "0001U")["icd10_format_valid"] is True  # letter in 3rd place; a PLA code


AUTH = {"claim_id": "CLM-2025-06-0041187", "received_date": "2025-06-03", "retro_window_days": 14}


def test_check_authorization_requirement_retro_window_open() -> None:
    assert run(
        "check_authorization_requirement", {**AUTH, "cpt_code": "70551", "service_date": "2025-05-28"}
    ) == {
        "outcome": "succeeded",
        "claim_id": "CLM-2025-06-0041187",
        "authorization_required": True,
        "reason": "advanced imaging",
        "days_since_service": 6,
        "retro_authorization_open": True,
    }


def test_check_authorization_requirement_retro_window_closed() -> None:
    result = run(
        "check_authorization_requirement", {**AUTH, "cpt_code": "27447", "service_date": "2025-05-01"}
    )
    assert (result["outcome"], result["days_since_service"], result["retro_authorization_open"]) == (
        "failed",
        33,
        False,
    )


def test_check_authorization_requirement_procedure_without_prior_auth() -> None:
    result = run(
        "check_authorization_requirement", {**AUTH, "cpt_code": "93000", "service_date": "2025-01-02"}
    )
    assert (result["outcome"], result["authorization_required"], result["reason"]) == (
        "succeeded",
        False,
        "not on the prior-authorisation list",
    )


def test_verify_provider_credentials_valid_on_the_date_of_service() -> None:
    data = {"provider_npi": "1234567893", "credential_expiry": "2025-12-31", "service_date": "2025-05-28"}
    assert run("verify_provider_credentials", data) == {
        "outcome": "succeeded",
        "provider_npi": "1234567893",
        "npi_valid": True,
        "credentialed_on_service_date": True,
        "days_expired_at_service": 0,
        "days_until_expiry": 210,
    }


def test_verify_provider_credentials_expired_or_bad_npi() -> None:
    expired = {"provider_npi": "1234567893", "credential_expiry": "2025-04-30", "service_date": "2025-05-28"}
    result = run("verify_provider_credentials", expired)
    assert (result["outcome"], result["days_expired_at_service"], result["days_until_expiry"]) == (
        "failed",
        28,
        -35,
    )
    bad_npi = run(
        "verify_provider_credentials",
        {**expired, "provider_npi": "1234567890", "credential_expiry": "2026-01-01"},
    )
    assert (bad_npi["outcome"], bad_npi["npi_valid"], bad_npi["credentialed_on_service_date"]) == (
        "failed",
        False,
        True,
    )


ELIGIBILITY = {
    "claim_id": "CLM-2025-06-0045102",
    "coverage_start": "2025-01-01",
    "service_date": "2025-05-28",
}


def test_check_eligibility_window_covered() -> None:
    assert run("check_eligibility_window", {**ELIGIBILITY, "coverage_end": "2025-12-31"}) == {
        "outcome": "succeeded",
        "claim_id": "CLM-2025-06-0045102",
        "eligible_on_service_date": True,
        "days_outside_coverage": 0,
    }


def test_check_eligibility_window_terminated_or_not_yet_effective() -> None:
    terminated = run("check_eligibility_window", {**ELIGIBILITY, "coverage_end": "2025-04-30"})
    assert (terminated["outcome"], terminated["days_outside_coverage"]) == ("failed", 28)
    future = {**ELIGIBILITY, "coverage_start": "2025-06-01", "coverage_end": "2026-05-31"}
    assert run("check_eligibility_window", future)["days_outside_coverage"] == 4


def test_compute_timely_filing_within_limit() -> None:
    data = {"claim_id": "CLM-2025-06-0047015", "service_date": "2025-01-10", "received_date": "2025-06-03"}
    assert run("compute_timely_filing", {**data, "filing_limit_days": 180}) == {
        "outcome": "succeeded",
        "claim_id": "CLM-2025-06-0047015",
        "filing_deadline": "2025-07-09",
        "days_past_limit": 0,
    }


def test_compute_timely_filing_past_limit() -> None:
    data = {"claim_id": "CLM-2025-06-0047016", "service_date": "2024-11-18", "received_date": "2025-06-02"}
    result = run("compute_timely_filing", {**data, "filing_limit_days": 180})
    assert (result["outcome"], result["filing_deadline"], result["days_past_limit"]) == (
        "failed",
        "2025-05-17",
        16,
    )


DUPLICATE = {
    "claim_id": "CLM-2025-06-0046021",
    "original_claim_id": "CLM-2025-05-0039977",
    "service_date": "2025-05-14",
    "original_service_date": "2025-05-14",
    "cpt_code": "80053",
    "original_cpt_code": "80053",
    "billed_amount": 84.0,
    "original_billed_amount": 84.0,
}


def test_detect_duplicate_claim_exact_duplicate() -> None:
    assert run("detect_duplicate_claim", DUPLICATE) == {
        "outcome": "succeeded",
        "claim_id": "CLM-2025-06-0046021",
        "original_claim_id": "CLM-2025-05-0039977",
        "differing_fields": [],
        "recommended_action": "deny_as_duplicate",
    }


def test_detect_duplicate_claim_corrected_claim() -> None:
    result = run("detect_duplicate_claim", {**DUPLICATE, "billed_amount": 92.5})
    assert (result["outcome"], result["differing_fields"], result["recommended_action"]) == (
        "failed",
        ["billed_amount"],
        "review_as_corrected_claim",
    )


THERAPY = {
    "claim_id": "RX-77120455",
    "drug_class": "statin",
    "first_fill_date": "2025-05-01",
    "first_days_supply": 30,
    "second_days_supply": 30,
    "max_overlap_days": 7,
}


def test_check_therapy_overlap_early_refill_within_allowance() -> None:
    assert run("check_therapy_overlap", {**THERAPY, "second_fill_date": "2025-05-27"}) == {
        "outcome": "succeeded",
        "claim_id": "RX-77120455",
        "drug_class": "statin",
        "overlap_days": 4,
    }


def test_check_therapy_overlap_duplicate_therapy() -> None:
    result = run("check_therapy_overlap", {**THERAPY, "second_fill_date": "2025-05-20"})
    assert (result["outcome"], result["overlap_days"]) == ("failed", 11)


COB = {"claim_id": "CLM-2025-06-0048044", "billed_amount": 1_100.0, "allowed_amount": 820.0}


def test_compute_cob_liability_secondary_pays_the_balance_of_allowed() -> None:
    assert run("compute_cob_liability", {**COB, "primary_paid_amount": 656.0}) == {
        "outcome": "succeeded",
        "claim_id": "CLM-2025-06-0048044",
        "secondary_payable": 164.0,
        "primary_overpayment": 0.0,
    }


def test_compute_cob_liability_primary_overpaid() -> None:
    assert run("compute_cob_liability", {**COB, "primary_paid_amount": 900.0}) == {
        "outcome": "failed",
        "claim_id": "CLM-2025-06-0048044",
        "secondary_payable": 0.0,
        "primary_overpayment": 80.0,
    }


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
