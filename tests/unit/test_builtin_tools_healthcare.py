"""Built-in healthcare tools: one passing and one failing case each, with exact outputs, at a fixed `now`."""

from __future__ import annotations

from tests.unit.builtin_tool_cases import run


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
