"""Built-in finance tools: one passing and one failing case each, with exact outputs, at a fixed `now`."""

from __future__ import annotations

import pytest

from pipeline.errors import ToolInputError
from tests.unit.builtin_tool_cases import run


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
