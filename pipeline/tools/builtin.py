"""Built-in tools: deterministic checks and computations that playbooks call by name.

Each function receives input already validated against the pack's `input_schema` and returns a
JSON-serialisable dict with `outcome`: `succeeded` when the check passed and the playbook may go on,
`failed` when it found a business problem a human must look at (a wrong check digit, a break beyond
tolerance, a claim filed too late). A business failure is a normal return, never an exception.
The only exception raised is ToolInputError, for input the schema cannot rule out (a date such as
2025-02-30 that matches the date pattern). No tool touches the network, randomness or the clock:
"today" is always `ctx.now`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import combinations
from typing import Any

from pipeline.errors import ToolInputError


@dataclass(frozen=True)
class ToolContext:
    """Who asked: the tenant, the exception, this execution (ticket ids derive from it), and now (UTC)."""

    tenant_id: str
    exception_id: str
    execution_id: str
    now: datetime


BuiltinTool = Callable[[dict[str, Any], ToolContext], dict[str, Any]]


# --- shared helpers -------------------------------------------------------------------------------


def _result(ok: bool, **fields: Any) -> dict[str, Any]:
    return {"outcome": "succeeded" if ok else "failed", **fields}


def _parse_date(data: dict[str, Any], key: str) -> date:
    """The ISO date in `data[key]`. Raises ToolInputError when it is not a real calendar date."""
    try:
        return date.fromisoformat(data[key])
    except ValueError as exc:
        raise ToolInputError(f"{key}: {data[key]!r} is not a calendar date") from exc


def add_business_days(start: date, days: int) -> date:
    """`start` moved forward by `days` weekdays (Saturday and Sunday skipped; no holiday calendar)."""
    current = start
    while days > 0:
        current += timedelta(days=1)
        if current.weekday() < 5:
            days -= 1
    return current


def business_days_between(start: date, end: date) -> int:
    """Weekdays after `start` up to and including `end`; 0 when `end` is not after `start`."""
    count, current = 0, start
    while current < end:
        current += timedelta(days=1)
        count += current.weekday() < 5
    return count


def luhn_check_digit(digits: str) -> int:
    """The Luhn (mod 10) check digit to append to a string of decimal digits."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 == 0 else 1)
        total += value // 10 + value % 10
    return (10 - total % 10) % 10


def isin_check_digit(payload: str) -> int:
    """ISO 6166 check digit of the first 11 ISIN characters (letters become 10..35, then Luhn)."""
    return luhn_check_digit("".join(str(int(char, 36)) for char in payload))


_CUSIP_SPECIALS = {"*": 36, "@": 37, "#": 38}


def cusip_check_digit(payload: str) -> int:
    """CUSIP check digit of the first 8 characters (every second value doubled, digits summed)."""
    total = 0
    for index, char in enumerate(payload):
        value = _CUSIP_SPECIALS.get(char) or int(char, 36)
        value *= 2 if index % 2 == 1 else 1
        total += value // 10 + value % 10
    return (10 - total % 10) % 10


# --- finance --------------------------------------------------------------------------------------


def validate_security_identifiers(data: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Check the ISIN (and CUSIP, if given) check digits and that a US/CA ISIN embeds the CUSIP."""
    isin, cusip = data["isin"], data.get("cusip")
    expected_isin = isin_check_digit(isin[:11])
    problems = (
        []
        if int(isin[11]) == expected_isin
        else [f"ISIN check digit is {isin[11]}, expected {expected_isin}"]
    )
    fields: dict[str, Any] = {
        "isin": isin,
        "isin_valid": not problems,
        "isin_expected_check_digit": expected_isin,
    }
    if cusip:
        expected_cusip = cusip_check_digit(cusip[:8])
        fields.update(
            cusip=cusip,
            cusip_valid=int(cusip[8]) == expected_cusip,
            cusip_expected_check_digit=expected_cusip,
        )
        if not fields["cusip_valid"]:
            problems.append(f"CUSIP check digit is {cusip[8]}, expected {expected_cusip}")
        if isin[:2] in ("US", "CA") and isin[2:11] != cusip:
            problems.append(f"ISIN {isin} does not embed CUSIP {cusip}")
    return _result(not problems, **fields, problems=problems)


def _explaining_items(amount: float, items: list[float], tolerance: float) -> tuple[int, ...] | None:
    """The smallest set of item indices whose sum is within `tolerance` of `amount`, or None."""
    for size in range(len(items) + 1):
        for combo in combinations(range(len(items)), size):
            if abs(amount - sum(items[i] for i in combo)) <= tolerance:
                return combo
    return None


def reconcile_cash_balance(data: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Break = statement - ledger; succeeded when open items (effects on that difference) explain it."""
    break_amount = round(data["actual_balance"] - data["expected_balance"], 2)
    items = [float(item) for item in data.get("open_item_amounts", [])]
    explained_by = _explaining_items(break_amount, items, data["tolerance"])
    explained = sum(items[i] for i in explained_by) if explained_by is not None else 0.0
    return _result(
        explained_by is not None,
        account_id=data["account_id"],
        currency=data["currency"],
        break_amount=break_amount,
        explained_by_items=list(explained_by or ()),
        unexplained_amount=round(break_amount - explained, 2),
    )


def reconcile_position(data: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Break = book - custodian; succeeded when trades pending settlement explain it within tolerance."""
    break_quantity = data["internal_quantity"] - data["custodian_quantity"]
    unexplained = break_quantity - data.get("pending_settlement_quantity", 0)
    return _result(
        abs(unexplained) <= data.get("tolerance_units", 0),
        isin=data["isin"],
        break_quantity=break_quantity,
        unexplained_quantity=unexplained,
    )


def compare_trade_economics(data: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Compare our booking with the counterparty's confirmation; succeeded when nothing material differs."""
    price_bps = abs(data["our_price"] - data["their_price"]) / data["our_price"] * 10_000
    mismatched = [
        name
        for name, differs in (
            ("quantity", data["our_quantity"] != data["their_quantity"]),
            ("price", price_bps > data["price_tolerance_bps"]),
            ("settlement_date", data["our_settlement_date"] != data["their_settlement_date"]),
        )
        if differs
    ]
    return _result(
        not mismatched,
        trade_id=data["trade_id"],
        mismatched_fields=mismatched,
        price_difference_bps=round(price_bps, 2),
        quantity_difference=data["our_quantity"] - data["their_quantity"],
    )


# CSDs in the EU, where CSDR cash penalties apply to every late business day.
_CSDR_CSDS = frozenset({"EUROCLEAR", "CLEARSTREAM", "EUROCLEAR_FR", "MONTE_TITOLI", "IBERCLEAR", "OEKB"})


def reschedule_settlement(data: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Next settlement date after today; failed when the fail is older than `max_fail_days` (buy-in due)."""
    intended = _parse_date(data, "intended_settlement_date")
    today = ctx.now.date()
    days_late = business_days_between(intended, today)
    new_date = intended if intended > today else add_business_days(today, 1)
    return _result(
        days_late <= data["max_fail_days"],
        trade_id=data["trade_id"],
        business_days_late=days_late,
        new_settlement_date=new_date.isoformat(),
        csdr_penalty_applies=data["csd"] in _CSDR_CSDS and days_late > 0,
        buy_in_due=days_late > data["max_fail_days"],
    )


# Business days after the trade date by which a corrected report must be accepted.
_REPORTING_DEADLINE_DAYS = {"EMIR": 1, "MiFIR": 1, "SFTR": 1, "CAT": 3, "TRACE": 0}


def check_reporting_deadline(data: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Resubmission deadline for a rejected report; failed when today is already past it."""
    deadline = add_business_days(_parse_date(data, "trade_date"), _REPORTING_DEADLINE_DAYS[data["regime"]])
    overdue = business_days_between(deadline, ctx.now.date())
    return _result(
        overdue == 0,
        report_id=data["report_id"],
        regime=data["regime"],
        rejection_code=data["rejection_code"],
        resubmit_by=deadline.isoformat(),
        business_days_overdue=overdue,
    )


def compute_entitlement(data: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Expected net corporate-action proceeds; succeeded when the amount received matches within tolerance."""
    gross = round(data["holding_quantity"] * data["rate_per_unit"], 2)
    tax = round(gross * data["withholding_tax_rate"], 2)
    difference = round(data["received_amount"] - (gross - tax), 2)
    return _result(
        abs(difference) <= data["tolerance"],
        ca_event_id=data["ca_event_id"],
        expected_gross=gross,
        withholding_tax=tax,
        expected_net=round(gross - tax, 2),
        difference=difference,
    )


# --- healthcare -----------------------------------------------------------------------------------

_ICD10_CM = re.compile(r"[A-TV-Z][0-9][0-9AB](\.[0-9A-TV-Z]{1,4})?")
_CPT = re.compile(r"[0-9]{4}[0-9FTU]")

# Procedure -> ICD-10-CM prefixes that support its medical necessity (a small demo table).
CPT_DIAGNOSIS_PREFIXES: dict[str, tuple[str, ...]] = {
    "71046": ("J", "R05", "R06", "R07", "C34", "S22"),
    "93000": ("I", "R00", "R07", "R55", "Z01.81"),
    "29881": ("M23", "S83", "M17"),
    "45378": ("K", "D12", "R19", "Z12.11", "C18"),
    "70551": ("G", "R51", "C71", "S06", "I63", "R42"),
    "27447": ("M17", "M87"),
    "90834": ("F",),
    "97110": ("M", "S", "G81", "I69", "Z47"),
    "80053": ("E", "N", "I10", "R", "Z00", "K70"),
    "66984": ("H25", "H26"),
}


def _pair_status(cpt: str, icd10: str) -> str:
    prefixes = CPT_DIAGNOSIS_PREFIXES.get(cpt)
    if prefixes is None:
        return "unknown_procedure"
    return "consistent" if icd10.startswith(prefixes) else "inconsistent"


def validate_claim_codes(data: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """ICD-10-CM and CPT formats plus the procedure/diagnosis pair; succeeded only if all are right."""
    icd10, cpt = data["icd10_code"], data["cpt_code"]
    icd10_ok, cpt_ok = bool(_ICD10_CM.fullmatch(icd10)), bool(_CPT.fullmatch(cpt))
    pair = _pair_status(cpt, icd10) if icd10_ok and cpt_ok else "not_checked"
    return _result(
        pair == "consistent",
        claim_id=data["claim_id"],
        icd10_format_valid=icd10_ok,
        cpt_format_valid=cpt_ok,
        pair_status=pair,
    )


# Procedures that need prior authorisation, with the reason (a small demo table).
PRIOR_AUTH_CPT: dict[str, str] = {
    "70551": "advanced imaging",
    "27447": "inpatient joint replacement",
    "29881": "outpatient surgery",
    "66984": "outpatient surgery",
    "45378": "endoscopy",
}


def check_authorization_requirement(data: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Does the procedure need prior auth, and can it still be requested retroactively?"""
    days_since_service = (_parse_date(data, "received_date") - _parse_date(data, "service_date")).days
    reason = PRIOR_AUTH_CPT.get(data["cpt_code"])
    retro_open = days_since_service <= data["retro_window_days"]
    return _result(
        reason is None or retro_open,
        claim_id=data["claim_id"],
        authorization_required=reason is not None,
        reason=reason or "not on the prior-authorisation list",
        days_since_service=days_since_service,
        retro_authorization_open=reason is not None and retro_open,
    )


def verify_provider_credentials(data: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """NPI check digit (Luhn over 80840 + 9 digits) and credential validity on the date of service."""
    npi = data["provider_npi"]
    npi_valid = luhn_check_digit("80840" + npi[:9]) == int(npi[9])
    expiry, service = _parse_date(data, "credential_expiry"), _parse_date(data, "service_date")
    return _result(
        npi_valid and service <= expiry,
        provider_npi=npi,
        npi_valid=npi_valid,
        credentialed_on_service_date=service <= expiry,
        days_expired_at_service=max(0, (service - expiry).days),
        days_until_expiry=(expiry - ctx.now.date()).days,
    )


def check_eligibility_window(data: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Was the member covered on the date of service? `days_outside_coverage` is 0 when covered."""
    start, end = _parse_date(data, "coverage_start"), _parse_date(data, "coverage_end")
    service = _parse_date(data, "service_date")
    days_outside = max(0, (start - service).days, (service - end).days)
    return _result(
        days_outside == 0,
        claim_id=data["claim_id"],
        eligible_on_service_date=days_outside == 0,
        days_outside_coverage=days_outside,
    )


def compute_timely_filing(data: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Filing deadline = service date + limit; failed when the claim was received after it."""
    deadline = _parse_date(data, "service_date") + timedelta(days=data["filing_limit_days"])
    days_past = (_parse_date(data, "received_date") - deadline).days
    return _result(
        days_past <= 0,
        claim_id=data["claim_id"],
        filing_deadline=deadline.isoformat(),
        days_past_limit=max(0, days_past),
    )


def detect_duplicate_claim(data: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Succeeded when the claim repeats the original exactly (deny as duplicate); failed otherwise."""
    differing = [
        name
        for name in ("service_date", "cpt_code", "billed_amount")
        if data[name] != data[f"original_{name}"]
    ]
    return _result(
        not differing,
        claim_id=data["claim_id"],
        original_claim_id=data["original_claim_id"],
        differing_fields=differing,
        recommended_action="deny_as_duplicate" if not differing else "review_as_corrected_claim",
    )


def check_therapy_overlap(data: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Days two fills of the same class overlap; failed when above `max_overlap_days`."""
    first, second = _parse_date(data, "first_fill_date"), _parse_date(data, "second_fill_date")
    first_end = first + timedelta(days=data["first_days_supply"])
    second_end = second + timedelta(days=data["second_days_supply"])
    overlap = max(0, (min(first_end, second_end) - max(first, second)).days)
    return _result(
        overlap <= data["max_overlap_days"],
        claim_id=data["claim_id"],
        drug_class=data["drug_class"],
        overlap_days=overlap,
    )


def compute_cob_liability(data: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Secondary payer's share after the primary paid; failed when the primary paid above the allowed amount."""
    billed, allowed, primary = data["billed_amount"], data["allowed_amount"], data["primary_paid_amount"]
    overpaid = round(max(0.0, primary - allowed), 2)
    return _result(
        overpaid == 0,
        claim_id=data["claim_id"],
        secondary_payable=round(max(0.0, min(billed, allowed) - primary), 2),
        primary_overpayment=overpaid,
    )


# --- both domains ---------------------------------------------------------------------------------

_PERSONAL_DATA = {
    "ssn": re.compile(r"\b\d{3}-\d{2}-\d{4}\b"),
    "email": re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.]+\b"),
    "iban": re.compile(r"\b[A-Z]{2}\d{2}[A-Z0-9]{11,30}\b"),
}
_TICKET_DUE_HOURS = {"CRITICAL": 4, "HIGH": 24, "MEDIUM": 72, "LOW": 168}


def create_ticket(data: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """A work ticket whose reference derives from the execution id (a retry gets the same ticket).

    Failed, with no ticket, when the summary looks like it carries personal data (SSN, e-mail, IBAN):
    tickets leave the platform, so redaction must have happened first.
    """
    leaks = sorted(name for name, pattern in _PERSONAL_DATA.items() if pattern.search(data["summary"]))
    if leaks:
        return _result(False, reason=f"summary contains personal data: {', '.join(leaks)}")
    digest = hashlib.sha256(ctx.execution_id.encode()).hexdigest()[:10].upper()
    due_by = ctx.now + timedelta(hours=_TICKET_DUE_HOURS[data["severity"]])
    return _result(True, ticket_ref=f"TKT-{digest}", queue=data["queue"], due_by=due_by.isoformat())


BUILTIN_TOOLS: dict[str, BuiltinTool] = {
    tool.__name__: tool
    for tool in (
        validate_security_identifiers,
        reconcile_cash_balance,
        reconcile_position,
        compare_trade_economics,
        reschedule_settlement,
        check_reporting_deadline,
        compute_entitlement,
        validate_claim_codes,
        check_authorization_requirement,
        verify_provider_credentials,
        check_eligibility_window,
        compute_timely_filing,
        detect_duplicate_claim,
        check_therapy_overlap,
        compute_cob_liability,
        create_ticket,
    )
}
