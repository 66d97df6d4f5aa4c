"""pipeline.redaction (PII at intake) and pipeline.packs.conditions (pack rule conditions)."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from pipeline.packs.conditions import as_number, attribute, matches
from pipeline.packs.models import Condition
from pipeline.redaction import REDACTED, luhn_valid, redact_attributes, redact_text

FINANCE_PII = ("account_number", "iban", "client_name", "tax_id", "trader_email")

# --- text patterns -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "kinds"),
    [
        ("Client SSN 123-45-6789 on file", "Client SSN [SSN REDACTED] on file", ["ssn"]),
        ("Ask jane.doe+ops@acme-bank.co.uk today", "Ask [EMAIL REDACTED] today", ["email"]),
        ("Pay to GB82 WEST 1234 5698 7654 32 now", "Pay to [IBAN REDACTED] now", ["iban"]),
        ("IBAN DE89370400440532013000.", "IBAN [IBAN REDACTED].", ["iban"]),
        ("Card 4111 1111 1111 1111 declined", "Card [CARD REDACTED] declined", ["card"]),
        ("Card 4111-1111-1111-1111 declined", "Card [CARD REDACTED] declined", ["card"]),
        ("Card 4111111111111111 declined", "Card [CARD REDACTED] declined", ["card"]),
    ],
)
def test_pii_in_text_is_redacted(text: str, expected: str, kinds: list[str]) -> None:
    assert redact_text(text) == (expected, kinds)


@pytest.mark.parametrize(
    "text",
    [
        "Trade 20250603004127 failed to settle",  # a 14-digit trade id that fails the Luhn check
        "Card-like 4111111111111112 is not Luhn-valid",
        "ISIN US0378331005 and 250,000 shares",
        "Settlement date 2025-06-05, amount 12,000,000.00",
    ],
)
def test_identifiers_that_are_not_pii_are_kept(text: str) -> None:
    assert redact_text(text) == (text, [])


def test_several_kinds_are_reported_in_pattern_order() -> None:
    text, kinds = redact_text("4111 1111 1111 1111, 123-45-6789, ops@acme.com")
    assert text == "[CARD REDACTED], [SSN REDACTED], [EMAIL REDACTED]"
    assert kinds == ["email", "ssn", "card"]


def test_already_redacted_text_reports_nothing() -> None:
    text = "Card [CARD REDACTED] was removed by the source system"
    assert redact_text(text) == (text, [])


def test_luhn() -> None:
    assert luhn_valid([int(c) for c in "79927398713"]) is True
    assert luhn_valid([int(c) for c in "79927398710"]) is False


# --- attributes -----------------------------------------------------------------------------------


def test_attributes_are_redacted_by_name_at_any_depth() -> None:
    attributes: dict[str, Any] = {
        "trade_id": "TRD-20250603-00412",
        "Client_Name": "Jane Doe",
        "counterparty": {"name": "Barclays", "contact": {"TRADER_EMAIL": "j@barclays.com", "desk": "rates"}},
        "legs": [{"account_number": "94512", "amount": 10}, {"amount": 20}],
    }
    redacted, paths = redact_attributes(attributes, FINANCE_PII)
    assert redacted == {
        "trade_id": "TRD-20250603-00412",
        "Client_Name": REDACTED,
        "counterparty": {"name": "Barclays", "contact": {"TRADER_EMAIL": REDACTED, "desk": "rates"}},
        "legs": [{"account_number": REDACTED, "amount": 10}, {"amount": 20}],
    }
    assert paths == ["Client_Name", "counterparty.contact.TRADER_EMAIL", "legs[0].account_number"]
    assert attributes["Client_Name"] == "Jane Doe"  # the input is not mutated


def test_attribute_values_are_not_pattern_scanned() -> None:
    attributes = {"trade_id": "4111111111111111", "note": "SSN 123-45-6789"}
    assert redact_attributes(attributes, FINANCE_PII) == (attributes, [])


def test_a_pii_field_holding_an_object_is_replaced_whole() -> None:
    redacted, paths = redact_attributes({"iban": {"country": "DE", "number": "x"}}, FINANCE_PII)
    assert redacted == {"iban": REDACTED}
    assert paths == ["iban"]


# --- conditions -----------------------------------------------------------------------------------


def check(
    condition: Condition,
    attributes: dict[str, Any],
    *,
    exception_type: str = "CASH_BREAK",
    description: str = "",
) -> bool:
    return matches(condition, exception_type, attributes, description)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (10_000_000, True),
        ("12,500,000.00", True),
        (" 10,000,000 ", True),
        (9_999_999.99, False),
        ("9,999,999.99", False),
        ("n/a", False),
        (True, False),
        (None, False),
    ],
)
def test_gte(value: Any, expected: bool) -> None:
    assert check(Condition(field="amount", gte=10_000_000), {"amount": value}) is expected


@pytest.mark.parametrize(
    ("value", "expected"), [("10,000", True), (0, True), ("10,000.01", False), ([], False)]
)
def test_lte(value: Any, expected: bool) -> None:
    assert check(Condition(field="amount", lte=10_000), {"amount": value}) is expected


def test_gte_and_lte_together_are_a_range() -> None:
    band = Condition(field="days_outstanding", gte=2, lte=5)
    assert [check(band, {"days_outstanding": days}) for days in (1, 2, 5, 6)] == [False, True, True, False]


def test_missing_field_never_matches_a_comparison() -> None:
    assert check(Condition(field="amount", gte=0), {}) is False
    assert check(Condition(field="amount", lte=0), {"other": 0}) is False


def test_one_of_compares_as_text() -> None:
    tier = Condition(field="counterparty_tier", one_of=("TIER_1", "1"))
    assert check(tier, {"counterparty_tier": "TIER_1"}) is True
    assert check(tier, {"counterparty_tier": 1}) is True
    assert check(tier, {"counterparty_tier": "TIER_2"}) is False
    assert check(tier, {}) is False


def test_equals() -> None:
    usd = Condition(field="currency", equals="USD")
    assert check(usd, {"currency": "USD"}) is True
    assert check(usd, {"currency": "usd"}) is False
    assert check(Condition(field="urgent", equals=True), {"urgent": True}) is True
    assert check(Condition(field="urgent", equals=True), {"urgent": "true"}) is False


def test_dotted_field() -> None:
    condition = Condition(field="counterparty.tier", one_of=("TIER_1",))
    assert check(condition, {"counterparty": {"tier": "TIER_1"}}) is True
    assert check(condition, {"counterparty": "TIER_1"}) is False
    assert attribute({"a": {"b": {"c": 3}}}, "a.b.c") == 3
    assert attribute({"a": {"b": 1}}, "a.b.c") is None


def test_text_contains_is_case_insensitive_and_any_of() -> None:
    condition = Condition(text_contains=("buy-in", "CSDR penalty"))
    assert check(condition, {}, description="Buy-In notice threatened") is True
    assert check(condition, {}, description="csdr PENALTY accruing") is True
    assert check(condition, {}, description="settled late") is False


def test_exception_types_restrict_the_condition() -> None:
    condition = Condition(exception_types=("SETTLEMENT_FAIL", "CASH_BREAK"), field="amount", gte=1)
    assert check(condition, {"amount": 5}, exception_type="CASH_BREAK") is True
    assert check(condition, {"amount": 5}, exception_type="POSITION_BREAK") is False
    assert check(Condition(exception_types=("CASH_BREAK",)), {}, exception_type="CASH_BREAK") is True


def test_empty_condition_matches_everything() -> None:
    assert check(Condition(), {}, exception_type="ANY") is True


def test_a_comparison_needs_a_field() -> None:
    with pytest.raises(pydantic.ValidationError, match="needs `field`"):
        Condition(gte=1)


@pytest.mark.parametrize(
    ("value", "number"),
    [
        ("1,250,000.50", 1_250_000.5),
        (" 42 ", 42.0),
        (7, 7.0),
        (2.5, 2.5),
        (False, None),
        ("1.2.3", None),
        ({}, None),
    ],
)
def test_as_number(value: Any, number: float | None) -> None:
    assert as_number(value) == number
