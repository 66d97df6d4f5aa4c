"""Realistic, reproducible exception traffic for the demo tenants (`sentinai demo`, tests, benchmarks).

Every generated exception carries the attributes its type's severity rules and playbook tool inputs
read, in the formats the tools' input schemas require, with values spread so that every severity and
both tool outcomes occur. Descriptions come from templates here, never from the packs' examples.
Output depends only on the random generator's state and `start` (no clock): the same seed gives the
same stream. Dates in attributes are relative to `occurred_at`, which lies up to 12 hours before
`start`; pass `start=now` for live demos so date-window tools see current dates.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

from pipeline.packs.loader import TenantView
from pipeline.tools.builtin import (
    CPT_DIAGNOSIS_PREFIXES,
    PRIOR_AUTH_CPT,
    add_business_days,
    cusip_check_digit,
    isin_check_digit,
    luhn_check_digit,
)

DEMO_START = datetime(2025, 6, 4, 14, 0, tzinfo=UTC)

Attributes = dict[str, Any]
_Generator = Callable[[random.Random, date], tuple[Attributes, str]]


# --- shared pools and helpers ---------------------------------------------------------------------


class _Security(NamedTuple):
    isin: str
    name: str
    currency: str
    csd: str
    unit_price: float


_SECURITIES = (
    _Security("US0378331005", "Apple Inc", "USD", "DTC", 192.5),
    _Security("US5949181045", "Microsoft Corp", "USD", "DTC", 421.0),
    _Security("US0231351067", "Amazon.com Inc", "USD", "DTC", 184.2),
    _Security("US46625H1005", "JPMorgan Chase & Co", "USD", "DTC", 201.3),
    _Security("DE0007164600", "SAP SE", "EUR", "CLEARSTREAM", 178.4),
    _Security("FR0000131104", "BNP Paribas SA", "EUR", "EUROCLEAR_FR", 62.1),
    _Security("NL0010273215", "ASML Holding NV", "EUR", "EUROCLEAR", 905.0),
    _Security("IT0003132476", "Eni SpA", "EUR", "MONTE_TITOLI", 14.2),
    _Security("ES0113900J37", "Banco Santander SA", "EUR", "IBERCLEAR", 4.6),
    _Security("GB0005405286", "HSBC Holdings plc", "GBP", "CREST", 7.1),
    _Security("CH0038863350", "Nestle SA", "CHF", "SIX_SIS", 94.8),
    _Security("XS2010028186", "EUR 1.125% senior notes 2029", "EUR", "EUROCLEAR", 0.9675),
)
_COUNTERPARTIES = (
    ("Goldman Sachs International", "TIER_1"),
    ("JPMorgan Securities plc", "TIER_1"),
    ("Morgan Stanley & Co. International", "TIER_1"),
    ("BNP Paribas SA", "TIER_1"),
    ("Societe Generale", "TIER_2"),
    ("Nomura International", "TIER_2"),
    ("Mizuho Securities", "TIER_2"),
    ("Jefferies LLC", "TIER_2"),
    ("Kepler Cheuvreux", "TIER_3"),
    ("Stifel Nicolaus", "TIER_3"),
)
_CUSTODIANS = (
    "BNY Mellon",
    "State Street",
    "Citi Custody",
    "Northern Trust",
    "Clearstream",
    "Euroclear Bank",
)


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    return round(low * (high / low) ** rng.random(), 2)


def _weighted(rng: random.Random, options: tuple[str, ...], weights: tuple[float, ...]) -> str:
    return rng.choices(options, weights=weights)[0]


def _business_days_back(day: date, days: int) -> date:
    while days > 0:
        day -= timedelta(days=1)
        days -= day.weekday() < 5
    return day


def _counterparty(rng: random.Random) -> Attributes:
    name, tier = rng.choice(_COUNTERPARTIES)
    return {"counterparty": name, "counterparty_tier": tier}


def _trade_id(rng: random.Random, today: date) -> str:
    return rng.choice(
        (f"TRD-{today:%Y%m%d}-{rng.randint(1, 99999):05d}", f"MX-{rng.randint(7_000_000, 7_999_999)}")
    )


def _text(rng: random.Random, templates: tuple[str, ...], attributes: Attributes, **extra: Any) -> str:
    return rng.choice(templates).format(**attributes, **extra)


# --- finance --------------------------------------------------------------------------------------

_FAIL_REASONS = (
    "lack of securities",
    "lack of cash",
    "unmatched settlement instruction",
    "counterparty SSI mismatch",
)
_SETTLEMENT_FAIL_TEXTS = (
    "{direction} of {quantity:,} {isin} ({security}) for trade {trade_id} failed at {csd}: {fail_reason}; "
    "intended settlement date {intended_settlement_date}.",
    "Trade {trade_id} with {counterparty} still unsettled {days_outstanding} business day(s) after ISD "
    "{intended_settlement_date}. {csd} reports {fail_reason}; consideration {currency} {amount:,.2f}.",
    "{csd} status: instruction for {trade_id} pending, {fail_reason}. {quantity:,} {isin} against "
    "{currency} {amount:,.2f}.{buy_in}",
)


def _settlement_fail(rng: random.Random, today: date) -> tuple[Attributes, str]:
    security = rng.choice(_SECURITIES)
    quantity = max(1, round(_log_uniform(rng, 5_000, 40_000_000) / security.unit_price))
    days = rng.choice((0, 1, 1, 2, 3, 5, 7))
    attributes = {
        "trade_id": _trade_id(rng, today),
        "isin": security.isin,
        "quantity": quantity,
        "amount": round(quantity * security.unit_price, 2),
        "currency": security.currency,
        **_counterparty(rng),
        "csd": security.csd,
        "intended_settlement_date": _business_days_back(today, days).isoformat(),
        "days_outstanding": days,
        "fail_reason": rng.choice(_FAIL_REASONS),
    }
    buy_in = " Counterparty has warned of a buy-in." if days >= 4 else ""
    direction = rng.choice(("Delivery versus payment", "Receipt versus payment"))
    return attributes, _text(
        rng, _SETTLEMENT_FAIL_TEXTS, attributes, security=security.name, buy_in=buy_in, direction=direction
    )


_TRADE_MISMATCH_TEXTS = (
    "{platform} economic mismatch on {trade_id} with {counterparty}: we booked {our_quantity:,} {isin} at "
    "{our_price}, they confirm {their_quantity:,} at {their_price}.",
    "Confirmation from {counterparty} for trade {trade_id} does not agree with our booking of {our_quantity:,} "
    "{isin} @ {our_price} settling {our_settlement_date}; trade unaffirmed on {platform}.",
    "Unaffirmed block {trade_id}: {counterparty} shows {their_quantity:,} {security} @ {their_price} settling "
    "{their_settlement_date}, our records {our_quantity:,} @ {our_price}.",
)


def _trade_mismatch(rng: random.Random, today: date) -> tuple[Attributes, str]:
    security = rng.choice(_SECURITIES)
    quantity = max(1, round(_log_uniform(rng, 20_000, 30_000_000) / security.unit_price))
    price = round(security.unit_price * rng.uniform(0.98, 1.02), 4)
    settle = add_business_days(today, rng.choice((1, 2)))
    kind = rng.choice(("price_within_tolerance", "price", "quantity", "settlement_date"))
    bps = rng.uniform(0.5, 4.5) if kind == "price_within_tolerance" else rng.uniform(8, 150)
    attributes = {
        "trade_id": _trade_id(rng, today),
        **_counterparty(rng),
        "isin": security.isin,
        "our_quantity": quantity,
        "their_quantity": quantity
        if kind != "quantity"
        else quantity - rng.randint(1, max(1, quantity // 4)) or 1,
        "our_price": price,
        "their_price": round(price * (1 + bps / 10_000), 4) if kind.startswith("price") else price,
        "our_settlement_date": settle.isoformat(),
        "their_settlement_date": (
            add_business_days(settle, 1) if kind == "settlement_date" else settle
        ).isoformat(),
        "amount": round(quantity * price, 2),
        "currency": security.currency,
    }
    platform = rng.choice(("DTCC CTM", "MarkitWire", "SWIFT MT515", "Traiana"))
    return attributes, _text(
        rng, _TRADE_MISMATCH_TEXTS, attributes, platform=platform, security=security.name
    )


_POSITION_BREAK_TEXTS = (
    "Position reconciliation break on {isin} ({security}) in {account_id} at {custodian}: book "
    "{internal_quantity:,}, custodian {custodian_quantity:,}.",
    "{custodian} holdings statement for {account_id} differs from our stock record by {break_quantity:,} units "
    "of {isin}; open {days_outstanding} day(s).",
    "Book vs street on {security} {isin}: {internal_quantity:,} internally, {custodian_quantity:,} at "
    "{custodian} (about {currency} {amount:,.0f} market value).",
)


def _position_break(rng: random.Random, today: date) -> tuple[Attributes, str]:
    security = rng.choice(_SECURITIES)
    custodian = rng.choice(_CUSTODIANS)
    break_quantity = max(1, round(_log_uniform(rng, 2_000, 30_000_000) / security.unit_price)) * rng.choice(
        (1, -1)
    )
    street = rng.randint(abs(break_quantity), abs(break_quantity) * 20 + 100_000)
    explained = rng.random() < 0.6
    attributes = {
        "isin": security.isin,
        "account_id": f"CUST-{custodian.split()[0].upper()}-{rng.randint(10_000, 99_999)}",
        "custodian": custodian,
        "internal_quantity": street + break_quantity,
        "custodian_quantity": street,
        "pending_settlement_quantity": break_quantity if explained else rng.choice((0, break_quantity // 2)),
        "amount": round(abs(break_quantity) * security.unit_price, 2),
        "currency": security.currency,
        "days_outstanding": rng.choice((0, 1, 2, 3, 6)),
    }
    return attributes, _text(
        rng, _POSITION_BREAK_TEXTS, attributes, security=security.name, break_quantity=abs(break_quantity)
    )


_NOSTROS = (("JPM", "USD", "JPMorgan Chase"), ("DB", "EUR", "Deutsche Bank"), ("BARC", "GBP", "Barclays"),
            ("UBS", "CHF", "UBS"), ("BNY", "USD", "BNY Mellon"), ("CITI", "USD", "Citibank"))  # fmt: skip
_CASH_BREAK_TEXTS = (
    "Cash reconciliation break on {account_id} ({bank}): statement {currency} {actual_balance:,.2f} vs ledger "
    "{expected_balance:,.2f}, difference {currency} {amount:,.2f}.",
    "{statement} from {bank} for value date {value_date} leaves {currency} {amount:,.2f} unreconciled on "
    "{account_id}; {item_count} open item(s) in the queue.",
    "Nostro {account_id} out of balance by {currency} {amount:,.2f} for {days_outstanding} day(s); suspected "
    "{cause}.",
)


def _split(rng: random.Random, total: float, parts: int) -> list[float]:
    cuts = [round(total * rng.uniform(0.1, 0.6), 2) for _ in range(parts - 1)]
    return [*cuts, round(total - sum(cuts), 2)]


def _cash_break(rng: random.Random, today: date) -> tuple[Attributes, str]:
    code, currency, bank = rng.choice(_NOSTROS)
    break_amount = _log_uniform(rng, 100, 40_000_000) * rng.choice((1, -1))
    noise = [round(rng.uniform(-250_000, 250_000), 2) for _ in range(rng.randint(0, 3))]
    explained = rng.random() < 0.65
    items = _split(rng, break_amount, rng.randint(1, 3)) if explained else []
    items = rng.sample(items + noise, len(items) + len(noise))
    expected = round(rng.uniform(1_000_000, 500_000_000), 2)
    days = rng.choice((0, 1, 1, 2, 4, 6))
    attributes = {
        "account_id": f"NOSTRO-{currency}-{code}-{rng.randint(1, 40):03d}",
        "bank": bank,
        "currency": currency,
        "expected_balance": expected,
        "actual_balance": round(expected + break_amount, 2),
        "open_item_amounts": items,
        "amount": abs(break_amount),
        "value_date": _business_days_back(today, days).isoformat(),
        "days_outstanding": days,
    }
    extra = {"statement": rng.choice(("MT950", "MT940", "camt.053")), "item_count": len(items)}
    extra["cause"] = rng.choice(("an unmatched outgoing wire", "bank charges", "a value-date difference"))
    return attributes, _text(rng, _CASH_BREAK_TEXTS, attributes, **extra)


_REJECTION_CODES = {
    "EMIR": ("EMIR-VR-2045", "CPTY_LEI_INVALID", "UTI_DUPLICATE"),
    "MiFIR": ("CON-412", "CON-023", "BUYER_ID_MISSING"),
    "SFTR": ("SFTR-COLL-ISIN", "SFTR-LEI-071", "MATURITY_DATE_INVALID"),
    "CAT": ("2102", "1004", "FDID_INVALID"),
    "TRACE": ("TRC-101", "CONTRA_MPID_MISSING", "LATE_REPORT"),
}
_REPOSITORIES = {
    "EMIR": "DTCC GTR",
    "MiFIR": "UnaVista ARM",
    "SFTR": "REGIS-TR",
    "CAT": "FINRA CAT",
    "TRACE": "FINRA TRACE",
}
_REG_REJECTION_TEXTS = (
    "{repository} rejected {regime} report {report_id} for trade {trade_id} (trade date {trade_date}) with "
    "code {rejection_code}.",
    "{regime} submission NACK: report {report_id} failed validation {rejection_code}; outstanding "
    "{days_outstanding} day(s), correction and resubmission required.",
    "Regulatory reporting exception: {rejection_code} returned by {repository} on {regime} report "
    "{report_id}, trade {trade_id}, notional {currency} {amount:,.0f}.",
)


def _regulatory_rejection(rng: random.Random, today: date) -> tuple[Attributes, str]:
    regime = rng.choice(tuple(_REJECTION_CODES))
    days = rng.choice((0, 0, 0, 1, 1, 2, 3))
    attributes = {
        "report_id": f"REP-{rng.randint(10_000_000, 99_999_999)}",
        "regime": regime,
        "rejection_code": rng.choice(_REJECTION_CODES[regime]),
        "trade_id": _trade_id(rng, today),
        "trade_date": _business_days_back(today, days + rng.randint(0, 1)).isoformat(),
        "days_outstanding": days,
        "amount": _log_uniform(rng, 100_000, 250_000_000),
        "currency": "USD" if regime in ("CAT", "TRACE") else "EUR",
    }
    return attributes, _text(rng, _REG_REJECTION_TEXTS, attributes, repository=_REPOSITORIES[regime])


_ISSUERS = (("037833", "Apple Inc"), ("594918", "Microsoft Corp"), ("023135", "Amazon.com Inc"),
            ("46625H", "JPMorgan Chase & Co"), ("88160R", "Tesla Inc"))  # fmt: skip
_STATIC_FIELDS = ("coupon rate", "maturity date", "day count convention", "issue price", "country of risk")
_SECURITY_MASTER_TEXTS = (
    "Static data break on {isin} ({security}): {field} differs between the security master and the {vendor} feed.",
    "Security master record for CUSIP {cusip} / ISIN {isin} disagrees with {vendor} on {field}; trades "
    "referencing it are on hold.",
    "Overnight {vendor} load flagged {isin} (CUSIP {cusip}) for reference data review: {field} mismatch.",
)


def _security_master_mismatch(rng: random.Random, today: date) -> tuple[Attributes, str]:
    issuer, name = rng.choice(_ISSUERS)
    issue = "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(2))
    cusip = issuer + issue + str(cusip_check_digit(issuer + issue))
    isin = "US" + cusip + str(isin_check_digit("US" + cusip))
    defect = _weighted(rng, ("none", "isin_check", "cusip_check", "other_cusip"), (45, 30, 15, 10))
    if defect == "isin_check":
        isin = isin[:11] + str((int(isin[11]) + rng.randint(1, 9)) % 10)
    if defect == "cusip_check":
        cusip = cusip[:8] + str((int(cusip[8]) + rng.randint(1, 9)) % 10)
    if defect == "other_cusip":
        cusip = "38141G104"  # Goldman Sachs Group: valid on its own, not the one the ISIN embeds
    attributes = {
        "isin": isin,
        "cusip": cusip,
        "vendor": rng.choice(("Bloomberg", "Refinitiv", "ICE Data Services")),
        "field_in_dispute": rng.choice(_STATIC_FIELDS),
        "days_outstanding": rng.randint(0, 3),
    }
    security = f"{name} {rng.choice(('senior notes', 'common stock', 'floating rate notes'))}"
    return attributes, _text(
        rng, _SECURITY_MASTER_TEXTS, attributes, security=security, field=attributes["field_in_dispute"]
    )


_CA_TEXTS = (
    "{event} on {isin} ({security}) paid {pay_date}: {custodian} credited {currency} {received_amount:,.2f} "
    "on {holding_quantity:,} held; entitlement differs by {currency} {amount:,.2f}.",
    "Income break for corporate action {ca_event_id}: rate {rate_per_unit} per unit, withholding "
    "{wht_percent}%, received {currency} {received_amount:,.2f}.",
    "{custodian} MT566 for {ca_event_id} does not match our entitlement calculation on {holding_quantity:,} "
    "units of {isin}; outstanding {days_outstanding} day(s).",
)


def _corporate_action(rng: random.Random, today: date) -> tuple[Attributes, str]:
    security = rng.choice(_SECURITIES)
    is_bond = security.isin.startswith("XS")
    holding = rng.randrange(1_000_000, 50_000_000, 1000) if is_bond else rng.randint(1_000, 2_000_000)
    rate = 0.01125 if is_bond else round(rng.uniform(0.05, 3.0), 4)
    wht = 0.0 if is_bond else rng.choice((0.15, 0.25, 0.26375, 0.30))
    net = round(holding * rate, 2) - round(round(holding * rate, 2) * wht, 2)
    received = rng.choice(
        (net, net, net * rng.uniform(0.6, 0.95), round(holding * rate * (1 - 0.35), 2), 0.0)
    )
    event_code = "INTR" if is_bond else "DVCA"
    attributes = {
        "ca_event_id": f"CA-{today.year}-{event_code}-{rng.randint(1, 999_999):06d}",
        "isin": security.isin,
        "custodian": rng.choice(_CUSTODIANS),
        "holding_quantity": holding,
        "rate_per_unit": rate,
        "withholding_tax_rate": wht,
        "received_amount": round(received, 2),
        "amount": round(abs(net - received), 2),
        "currency": security.currency,
        "pay_date": _business_days_back(today, rng.randint(0, 8)).isoformat(),
        "days_outstanding": rng.choice((0, 1, 3, 5, 12)),
    }
    extra = {
        "event": "Coupon" if is_bond else "Cash dividend",
        "security": security.name,
        "wht_percent": wht * 100,
    }
    return attributes, _text(rng, _CA_TEXTS, attributes, **extra)


_MARGIN_TEXTS = (
    "{counterparty} disputes {margin_type} call {call_id} under {csa_id}: our exposure {currency} "
    "{our_exposure:,.0f}, theirs {currency} {their_exposure:,.0f}.",
    "Margin call {call_id} only partially agreed by {counterparty}; disputed amount {currency} {amount:,.0f} "
    "outstanding {days_outstanding} day(s).",
    "Collateral dispute on {csa_id} with {counterparty}: mark-to-market difference of {currency} {amount:,.0f} "
    "on the {margin_type} portfolio.",
)


def _margin_call_dispute(rng: random.Random, today: date) -> tuple[Attributes, str]:
    disputed = _log_uniform(rng, 250_000, 60_000_000)
    ours = round(disputed + rng.uniform(0, 80_000_000), 2)
    attributes = {
        "call_id": f"MC-{today:%Y%m%d}-{rng.randint(1, 400):03d}",
        **_counterparty(rng),
        "csa_id": f"CSA-{rng.randint(2012, 2024)}-VM-{rng.randint(1, 9999):04d}",
        "margin_type": rng.choice(("variation margin", "initial margin")),
        "our_exposure": ours,
        "their_exposure": round(ours - disputed, 2),
        "amount": disputed,
        "currency": rng.choice(("USD", "EUR", "GBP")),
        "days_outstanding": rng.choice((0, 1, 2, 5)),
    }
    return attributes, _text(rng, _MARGIN_TEXTS, attributes)


_UNCLASSIFIED_FINANCE_TEXTS = (
    "Ops query {reference}: {team} says the {system} screen shows figures that differ from yesterday; please investigate.",
    "Manual review requested by {team} for item {reference}; no further details provided.",
    "{system} end-of-day batch finished with warnings for {team}, reference {reference}.",
)


def _unclassified_finance(rng: random.Random, today: date) -> tuple[Attributes, str]:
    attributes = {"reference": f"OPS-{today.year}-{rng.randint(10_000, 99_999)}"}
    extra = {
        "team": rng.choice(("fund accounting", "the FX desk", "client services")),
        "system": rng.choice(("Murex", "Calypso", "TLM")),
    }
    return attributes, _text(rng, _UNCLASSIFIED_FINANCE_TEXTS, attributes, **extra)


# --- healthcare -----------------------------------------------------------------------------------


class _Provider(NamedTuple):
    name: str
    npi: str
    procedures: tuple[str, ...]


def _npi(base: str) -> str:
    return base + str(luhn_check_digit("80840" + base))


_PROVIDERS = (
    _Provider("Lakeside Orthopedics", _npi("148203917"), ("29881", "27447", "97110")),
    _Provider("Riverside Cardiology", _npi("172940361"), ("93000", "80053")),
    _Provider("Harbor Imaging Associates", _npi("160318842"), ("70551", "71046")),
    _Provider("Summit Behavioral Health", _npi("115590274"), ("90834",)),
    _Provider("Valley Eye Surgeons", _npi("193047715"), ("66984",)),
    _Provider("Cedar Gastroenterology", _npi("124476093"), ("45378", "80053")),
    _Provider("Northgate Family Medicine", _npi("187720458"), ("80053", "93000", "71046")),
    _Provider("Peak Physical Therapy", _npi("131158806"), ("97110",)),
)
_PROCEDURES = {
    "70551": ("MRI brain without contrast", 1_800, 3_500),
    "27447": ("total knee arthroplasty", 35_000, 90_000),
    "29881": ("knee arthroscopy with meniscectomy", 4_000, 12_000),
    "66984": ("cataract surgery with IOL", 2_500, 6_000),
    "45378": ("diagnostic colonoscopy", 1_500, 4_000),
    "71046": ("chest X-ray, two views", 80, 300),
    "93000": ("electrocardiogram", 40, 150),
    "90834": ("psychotherapy, 45 minutes", 120, 250),
    "97110": ("therapeutic exercise", 60, 400),
    "80053": ("comprehensive metabolic panel", 30, 120),
}
# Valid ICD-10-CM codes that support each procedure (prefixes match CPT_DIAGNOSIS_PREFIXES).
_DIAGNOSES = {
    "71046": ("J18.9", "R05.9", "R07.9", "J44.1"),
    "93000": ("I48.91", "R00.2", "R07.9", "I10"),
    "29881": ("M23.205", "S83.241A", "M17.11"),
    "45378": ("K57.30", "Z12.11", "D12.6"),
    "70551": ("G43.909", "R51.9", "G40.909"),
    "27447": ("M17.11", "M17.12"),
    "90834": ("F32.1", "F41.1", "F43.10"),
    "97110": ("M54.50", "S83.511A", "M25.561"),
    "80053": ("E11.9", "N18.30", "I10", "E78.5"),
    "66984": ("H25.11", "H25.13", "H26.9"),
}
_PLANS = {"commercial": "commercial PPO", "medicare_advantage": "Medicare Advantage", "medicaid": "Medicaid managed care",
          "marketplace": "ACA marketplace"}  # fmt: skip


def _billed(rng: random.Random, cpt: str | None = None) -> float:
    """Mostly the procedure's usual charge; a few facility claims reach HIGH and CRITICAL amounts."""
    roll = rng.random()
    if roll < 0.04:
        return _log_uniform(rng, 250_000, 600_000)
    if roll < 0.12:
        return _log_uniform(rng, 50_000, 250_000)
    _, low, high = _PROCEDURES[cpt or rng.choice(tuple(_PROCEDURES))]
    return round(rng.uniform(low, high), 2)


def _claim(rng: random.Random, today: date, provider: _Provider | None = None) -> Attributes:
    """Attributes every claim carries: ids, provider, plan and dates (received within 3 days of today)."""
    provider = provider or rng.choice(_PROVIDERS)
    received = today - timedelta(days=rng.randint(0, 3))
    return {
        "claim_id": f"CLM-{today:%Y-%m}-{rng.randint(1, 9_999_999):07d}",
        "member_id": f"MBR{rng.randint(100_000_000, 999_999_999)}",
        "provider_name": provider.name,
        "provider_npi": provider.npi,
        "plan_type": rng.choice(tuple(_PLANS)),
        "received_date": received.isoformat(),
        "service_date": (received - timedelta(days=rng.randint(1, 30))).isoformat(),
    }


_MISSING_AUTH_TEXTS = (
    "Claim {claim_id} for CPT {cpt_code} on {service_date} from {provider_name} has no prior authorization on "
    "file; billed ${billed_amount:,.2f}.",
    "Precert missing: {provider_name} performed {procedure} ({cpt_code}) on {service_date}, claim received "
    "{received_date} without an authorization number.",
    "Utilization review hold on {claim_id}: PA not found for {procedure}, member on {plan}.",
)


def _missing_authorization(rng: random.Random, today: date) -> tuple[Attributes, str]:
    # Mostly procedures that do need prior auth; the rest are false alarms the tool clears.
    needs_auth = rng.random() < 0.75
    cpt = rng.choice([code for code in _PROCEDURES if (code in PRIOR_AUTH_CPT) == needs_auth])
    provider = rng.choice([provider for provider in _PROVIDERS if cpt in provider.procedures])
    attributes = _claim(rng, today, provider)
    attributes.update(cpt_code=cpt, icd10_code=rng.choice(_DIAGNOSES[cpt]), billed_amount=_billed(rng, cpt))
    extra = {"procedure": _PROCEDURES[cpt][0], "plan": _PLANS[attributes["plan_type"]]}
    return attributes, _text(rng, _MISSING_AUTH_TEXTS, attributes, **extra)


_CODE_MISMATCH_TEXTS = (
    "Diagnosis {icd10_code} billed with CPT {cpt_code} on claim {claim_id}; medical necessity edit failed "
    "for {provider_name}.",
    "Coding edit on {claim_id}: procedure code {cpt_code} ({procedure}) and diagnosis code {icd10_code} do not "
    "line up, DOS {service_date}.",
    "Code mismatch pended claim {claim_id} from {provider_name}: dx {icd10_code}, px {cpt_code}, billed "
    "${billed_amount:,.2f}.",
)


def _code_pair(rng: random.Random, cpt: str) -> tuple[str, str]:
    """A (cpt, icd10) pair: consistent, inconsistent, or with one code malformed."""
    kind = _weighted(rng, ("consistent", "inconsistent", "bad_icd10", "bad_cpt"), (35, 45, 10, 10))
    if kind == "consistent":
        return cpt, rng.choice(_DIAGNOSES[cpt])
    if kind == "bad_cpt":
        return cpt[:4], rng.choice(_DIAGNOSES[cpt])
    other = [
        code
        for codes in _DIAGNOSES.values()
        for code in codes
        if not code.startswith(CPT_DIAGNOSIS_PREFIXES[cpt])
    ]
    icd10 = rng.choice(other)
    return cpt, icd10.replace(".", "") if kind == "bad_icd10" and "." in icd10 else icd10


def _code_mismatch(rng: random.Random, today: date) -> tuple[Attributes, str]:
    provider = rng.choice(_PROVIDERS)
    cpt, icd10 = _code_pair(rng, rng.choice(provider.procedures))
    attributes = _claim(rng, today, provider)
    attributes.update(cpt_code=cpt, icd10_code=icd10, billed_amount=_billed(rng, provider.procedures[0]))
    procedure = _PROCEDURES.get(cpt, ("unlisted procedure",))[0]
    return attributes, _text(rng, _CODE_MISMATCH_TEXTS, attributes, procedure=procedure)


_CREDENTIALS = {"state_license": "State medical license", "dea_registration": "DEA registration",
                "board_certification": "Board certification", "network_credentialing": "Network credentialing"}  # fmt: skip
_CREDENTIAL_TEXTS = (
    "Credential check on claim {claim_id}: {credential} for {provider_name} (NPI {provider_npi}) has expiry "
    "{credential_expiry} on file, date of service {service_date}.",
    "Credentialing hold on claim {claim_id}: {provider_name} shows a {credential} lapse, expiry on file "
    "{credential_expiry}.",
    "Provider enrollment check failed for NPI {provider_npi}: {credential} not current, {days_outstanding} "
    "day(s) of claims pending.",
)


def _expired_credentials(rng: random.Random, today: date) -> tuple[Attributes, str]:
    attributes = _claim(rng, today)
    service = date.fromisoformat(attributes["service_date"])
    lapsed = rng.random() < 0.6
    expiry = (
        service - timedelta(days=rng.randint(1, 120))
        if lapsed
        else service + timedelta(days=rng.randint(0, 60))
    )
    if rng.random() < 0.1:
        npi = attributes["provider_npi"]
        attributes["provider_npi"] = npi[:9] + str((int(npi[9]) + 1) % 10)
    kind = rng.choice(tuple(_CREDENTIALS))
    attributes.update(
        credential_type=kind,
        credential_expiry=expiry.isoformat(),
        billed_amount=_billed(rng),
        days_outstanding=rng.choice((0, 2, 5, 12, 20)),
    )
    return attributes, _text(rng, _CREDENTIAL_TEXTS, attributes, credential=_CREDENTIALS[kind])


_TERMINATIONS = (
    "premium nonpayment",
    "voluntary termination",
    "aged off dependent coverage",
    "Medicaid redetermination",
)
_ELIGIBILITY_TEXTS = (
    "Member not eligible on {service_date}: coverage {coverage_start} to {coverage_end} ({reason}); claim "
    "{claim_id} denied.",
    "Eligibility response shows coverage terminated {coverage_end} for claim {claim_id}; provider disputes, "
    "billed ${billed_amount:,.2f}.",
    "Lapse in coverage flagged on {claim_id} ({plan}): service date {service_date} outside the enrollment span.",
)


def _eligibility_lapse(rng: random.Random, today: date) -> tuple[Attributes, str]:
    attributes = _claim(rng, today)
    service = date.fromisoformat(attributes["service_date"])
    roll = rng.random()
    if roll < 0.45:  # terminated before the date of service
        end = service - timedelta(days=rng.randint(1, 60))
        start = end - timedelta(days=rng.randint(90, 700))
    elif roll < 0.6:  # not yet effective on the date of service
        start = service + timedelta(days=rng.randint(1, 30))
        end = start + timedelta(days=364)
    else:  # covered after all: a stale eligibility file raised a false alarm
        start = service - timedelta(days=rng.randint(30, 700))
        end = service + timedelta(days=rng.randint(0, 300))
    attributes.update(
        coverage_start=start.isoformat(), coverage_end=end.isoformat(), billed_amount=_billed(rng)
    )
    extra = {"reason": rng.choice(_TERMINATIONS), "plan": _PLANS[attributes["plan_type"]]}
    return attributes, _text(rng, _ELIGIBILITY_TEXTS, attributes, **extra)


_DRUG_CLASSES = {
    "opioid": ("opioid analgesics", ("oxycodone 10 mg", "hydrocodone/APAP 10-325 mg", "morphine ER 15 mg")),
    "benzodiazepine": ("benzodiazepines", ("alprazolam 0.5 mg", "lorazepam 1 mg", "clonazepam 0.5 mg")),
    "anticoagulant": ("oral anticoagulants", ("apixaban 5 mg", "rivaroxaban 20 mg", "warfarin 5 mg")),
    "statin": ("statins", ("atorvastatin 40 mg", "rosuvastatin 20 mg", "simvastatin 40 mg")),
    "ssri": ("SSRI antidepressants", ("sertraline 100 mg", "escitalopram 10 mg", "fluoxetine 20 mg")),
    "proton_pump_inhibitor": (
        "proton pump inhibitors",
        ("omeprazole 20 mg", "pantoprazole 40 mg", "esomeprazole 40 mg"),
    ),
}
_THERAPY_TEXTS = (
    "DUR alert on {claim_id}: {second_drug} filled {second_fill_date} while {first_drug} ({first_days_supply}-day "
    "supply from {first_fill_date}) is still active.",
    "Therapeutic duplication in {label}: {first_drug} and {second_drug} dispensed to the same member, fills "
    "{first_fill_date} and {second_fill_date}.",
    "Pharmacy claim {claim_id} rejected for duplicate therapy: two {label} with overlapping days supply.",
)


def _duplicate_therapy(rng: random.Random, today: date) -> tuple[Attributes, str]:
    drug_class = rng.choices(tuple(_DRUG_CLASSES), weights=(8, 6, 6, 30, 25, 25))[0]
    label, drugs = _DRUG_CLASSES[drug_class]
    first_drug, second_drug = rng.sample(drugs, 2)
    supply = rng.choice((30, 30, 90))
    second_fill = today - timedelta(days=rng.randint(0, 3))
    first_fill = second_fill - timedelta(days=rng.randint(supply // 2, supply + 5))
    attributes = _claim(rng, today)
    attributes.update(
        drug_class=drug_class,
        first_drug=first_drug,
        second_drug=second_drug,
        first_fill_date=first_fill.isoformat(),
        first_days_supply=supply,
        second_fill_date=second_fill.isoformat(),
        second_days_supply=rng.choice((30, 90)),
        billed_amount=round(rng.uniform(12, 900), 2),
    )
    return attributes, _text(rng, _THERAPY_TEXTS, attributes, label=label)


_DUPLICATE_CLAIM_TEXTS = (
    "Claim {claim_id} looks like a duplicate of {original_claim_id}: {provider_name}, CPT {cpt_code}, DOS "
    "{service_date}, ${billed_amount:,.2f}.",
    "Suspected duplicate submission from {provider_name}: {claim_id} vs already paid {original_claim_id} (DOS "
    "{original_service_date}).",
    "Duplicate claim edit fired on {claim_id}; original {original_claim_id} billed ${original_billed_amount:,.2f} "
    "for {original_cpt_code}.",
)


def _duplicate_claim(rng: random.Random, today: date) -> tuple[Attributes, str]:
    provider = rng.choice(_PROVIDERS)
    cpt = rng.choice(provider.procedures)
    attributes = _claim(rng, today, provider)
    billed = _billed(rng, cpt)
    attributes.update(
        original_claim_id=f"CLM-{today:%Y-%m}-{rng.randint(1, 9_999_999):07d}",
        original_service_date=attributes["service_date"],
        cpt_code=cpt,
        original_cpt_code=cpt,
        billed_amount=billed,
        original_billed_amount=billed,
    )
    differing = _weighted(rng, ("none", "service_date", "cpt_code", "billed_amount"), (55, 15, 10, 20))
    if differing == "service_date":
        service = date.fromisoformat(attributes["service_date"])
        attributes["original_service_date"] = (service - timedelta(days=rng.randint(1, 14))).isoformat()
    if differing == "cpt_code":
        attributes["original_cpt_code"] = rng.choice([code for code in _PROCEDURES if code != cpt])
    if differing == "billed_amount":
        attributes["original_billed_amount"] = round(billed * rng.uniform(0.7, 0.95), 2)
    return attributes, _text(rng, _DUPLICATE_CLAIM_TEXTS, attributes)


_FILING_LIMITS = {"commercial": 180, "medicare_advantage": 365, "medicaid": 120, "marketplace": 90}
_TIMELY_FILING_TEXTS = (
    "Claim {claim_id} received {received_date} for date of service {service_date}, past the {filing_limit_days}-day "
    "timely filing limit.",
    "Timely filing denial on {claim_id} ({plan}); {provider_name} requests reconsideration, billed "
    "${billed_amount:,.2f}.",
    "Late submission flagged: {elapsed} days between service ({service_date}) and receipt ({received_date}) on "
    "claim {claim_id}.",
)


def _timely_filing(rng: random.Random, today: date) -> tuple[Attributes, str]:
    attributes = _claim(rng, today)
    limit = _FILING_LIMITS[attributes["plan_type"]]
    elapsed = limit + rng.randint(1, 150) if rng.random() < 0.65 else rng.randint(limit - 40, limit)
    received = date.fromisoformat(attributes["received_date"])
    attributes.update(
        service_date=(received - timedelta(days=elapsed)).isoformat(),
        filing_limit_days=limit,
        billed_amount=_billed(rng),
        days_outstanding=rng.randint(0, 6),
    )
    return attributes, _text(
        rng, _TIMELY_FILING_TEXTS, attributes, elapsed=elapsed, plan=_PLANS[attributes["plan_type"]]
    )


_PRIMARY_PAYERS = (
    "Medicare Part B",
    "Aetna",
    "Cigna",
    "UnitedHealthcare",
    "Blue Cross Blue Shield of Illinois",
    "Progressive (auto)",
)
_COB_TEXTS = (
    "Other insurance on file for claim {claim_id}: {primary_payer} is primary; primary paid "
    "${primary_paid_amount:,.2f} of ${allowed_amount:,.2f} allowed.",
    "Secondary claim {claim_id} received with primary EOB from {primary_payer}: billed ${billed_amount:,.2f}, "
    "allowed ${allowed_amount:,.2f}.",
    "Coordination of benefits review on {claim_id}: order of benefits questioned ({reason}), {primary_payer} "
    "paid ${primary_paid_amount:,.2f}.",
)


def _coordination_of_benefits(rng: random.Random, today: date) -> tuple[Attributes, str]:
    attributes = _claim(rng, today)
    billed = _billed(rng)
    allowed = round(billed * rng.uniform(0.5, 0.9), 2)
    share = rng.uniform(0.6, 0.9) if rng.random() < 0.8 else rng.uniform(1.02, 1.2)
    attributes.update(
        primary_payer=rng.choice(_PRIMARY_PAYERS),
        billed_amount=billed,
        allowed_amount=allowed,
        primary_paid_amount=round(allowed * share, 2),
    )
    reason = rng.choice(("birthday rule", "Medicare secondary payer", "other group coverage", "court order"))
    return attributes, _text(rng, _COB_TEXTS, attributes, reason=reason)


_UNCLASSIFIED_HEALTHCARE_TEXTS = (
    "Provider office called about claim {claim_id}: status not visible on the portal, please review.",
    "Claims query from the call centre about {claim_id}; member says the statement looks wrong, no details given.",
    "Examiner cannot save notes on claim {claim_id}; manual review requested.",
)


def _unclassified_healthcare(rng: random.Random, today: date) -> tuple[Attributes, str]:
    attributes = _claim(rng, today)
    attributes["billed_amount"] = _billed(rng)
    return attributes, _text(rng, _UNCLASSIFIED_HEALTHCARE_TEXTS, attributes)


# --- assembling exceptions ------------------------------------------------------------------------


class _TypeTraffic(NamedTuple):
    weight: float
    generate: _Generator
    sources: tuple[str, ...]


_TRAFFIC: dict[str, _TypeTraffic] = {
    "SETTLEMENT_FAIL": _TypeTraffic(22, _settlement_fail, ("swift-gateway", "murex", "calypso")),
    "TRADE_MISMATCH": _TypeTraffic(15, _trade_mismatch, ("dtcc-ctm", "murex", "calypso")),
    "POSITION_BREAK": _TypeTraffic(12, _position_break, ("tlm-recs", "duco")),
    "CASH_BREAK": _TypeTraffic(15, _cash_break, ("tlm-recs", "swift-gateway")),
    "REGULATORY_REPORT_REJECTION": _TypeTraffic(
        10, _regulatory_rejection, ("emir-hub", "cat-reporter", "trace-gateway")
    ),
    "SECURITY_MASTER_MISMATCH": _TypeTraffic(8, _security_master_mismatch, ("golden-source", "murex")),
    "CORPORATE_ACTION_DISCREPANCY": _TypeTraffic(8, _corporate_action, ("ca-hub", "swift-gateway")),
    "MARGIN_CALL_DISPUTE": _TypeTraffic(6, _margin_call_dispute, ("acadiasoft", "calypso-collateral")),
    "UNCLASSIFIED_FINANCE": _TypeTraffic(4, _unclassified_finance, ("ops-portal",)),
    "MISSING_AUTHORIZATION": _TypeTraffic(16, _missing_authorization, ("facets", "epic-claims")),
    "CODE_MISMATCH": _TypeTraffic(16, _code_mismatch, ("facets", "edi-837-gateway")),
    "EXPIRED_CREDENTIALS": _TypeTraffic(8, _expired_credentials, ("credentialing-hub", "facets")),
    "ELIGIBILITY_LAPSE": _TypeTraffic(14, _eligibility_lapse, ("facets", "availity")),
    "DUPLICATE_THERAPY": _TypeTraffic(10, _duplicate_therapy, ("pbm-gateway",)),
    "DUPLICATE_CLAIM": _TypeTraffic(14, _duplicate_claim, ("facets", "edi-837-gateway")),
    "TIMELY_FILING_EXCEEDED": _TypeTraffic(10, _timely_filing, ("facets", "epic-claims")),
    "COORDINATION_OF_BENEFITS": _TypeTraffic(8, _coordination_of_benefits, ("facets", "availity")),
    "UNCLASSIFIED_HEALTHCARE": _TypeTraffic(4, _unclassified_healthcare, ("member-services",)),
}

_FIRST_NAMES = ("Maria", "James", "Aisha", "Wei", "Robert", "Priya", "Tomasz", "Grace", "Luis", "Hannah")
_LAST_NAMES = (
    "Gonzalez",
    "O'Connor",
    "Rahman",
    "Chen",
    "Kowalski",
    "Nair",
    "Nowak",
    "Okafor",
    "Silva",
    "Becker",
)


def _person(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}"


def _iban(rng: random.Random) -> str:
    """A GB IBAN with correct ISO 13616 check digits (synthetic sort code and account)."""
    bban = f"WEST{rng.randint(0, 10**14 - 1):014d}"
    numeric = "".join(str(int(char, 36)) for char in bban + "GB00")
    return f"GB{98 - int(numeric) % 97:02d}{bban}"


def _finance_pii(rng: random.Random) -> Attributes:
    pii: Attributes = {}
    if rng.random() < 0.15:
        pii.update(client_name=_person(rng), account_number=f"{rng.randint(10**9, 10**10 - 1)}")
    if rng.random() < 0.05:
        pii["iban"] = _iban(rng)
    if rng.random() < 0.05:
        pii["trader_email"] = (
            f"{rng.choice(_FIRST_NAMES).lower()}.{rng.choice(_LAST_NAMES).lower()}@desk.example.com"
        )
    if rng.random() < 0.03:
        pii["tax_id"] = f"{rng.randint(10, 99)}-{rng.randint(1_000_000, 9_999_999)}"
    return pii


def _healthcare_pii(rng: random.Random) -> Attributes:
    pii: Attributes = {}
    if rng.random() < 0.2:
        birth = date(1940, 1, 1) + timedelta(days=rng.randint(0, 30_000))
        pii.update(patient_name=_person(rng), date_of_birth=birth.isoformat())
    if rng.random() < 0.08:
        pii["ssn"] = f"9{rng.randint(0, 99):02d}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}"
    if rng.random() < 0.08:
        pii.update(
            phone=f"(312) 555-{rng.randint(100, 199):04d}",
            address=f"{rng.randint(1, 9999)} W Madison St, Chicago, IL",
        )
    return pii


def _type_hint(rng: random.Random, tenant: TenantView, exception_type: str) -> str | None:
    """Usually the canonical id, sometimes a source system's alias, about 10% of the time nothing."""
    aliases = tenant.domain.exception_types[exception_type].aliases
    roll = rng.random()
    if roll < 0.10:
        return None
    return rng.choice(aliases) if roll < 0.20 and aliases else exception_type


def demo_types(tenant: TenantView) -> tuple[str, ...]:
    """The tenant's exception types this module can generate (its pack's types that have a generator)."""
    return tuple(name for name in tenant.domain.exception_types if name in _TRAFFIC)


def generate_for_type(
    rng: random.Random,
    tenant: TenantView,
    exception_type: str,
    *,
    sequence: int,
    start: datetime = DEMO_START,
) -> dict[str, Any]:
    """One exception of a known type (the label, for tests and accuracy benchmarks).

    Raises ValueError when the type is not in the tenant's pack or has no generator here.
    """
    if exception_type not in demo_types(tenant):
        raise ValueError(
            f"no demo traffic for {exception_type!r} in tenant {tenant.tenant_id} ({tenant.domain.pack})"
        )
    traffic = _TRAFFIC[exception_type]
    occurred_at = start - timedelta(seconds=rng.randint(60, 12 * 3600))
    attributes, description = traffic.generate(rng, occurred_at.date())
    pii = _finance_pii(rng) if tenant.domain.pack == "finance" else _healthcare_pii(rng)
    exception: dict[str, Any] = {
        "exception_id": f"EXC-{tenant.tenant_id}-{rng.getrandbits(32):08X}-{sequence:07d}",
        "source_system": rng.choice(traffic.sources),
        "description": description,
        "occurred_at": occurred_at.isoformat().replace("+00:00", "Z"),
        "attributes": {**attributes, **pii},
    }
    hint = _type_hint(rng, tenant, exception_type)
    return exception if hint is None else {**exception, "exception_type": hint}


def generate_exception(
    rng: random.Random, tenant: TenantView, *, sequence: int, start: datetime = DEMO_START
) -> dict[str, Any]:
    """One exception for `tenant`, its type drawn by demo weights. Raises ValueError for a pack with no demo types."""
    names = demo_types(tenant)
    if not names:
        raise ValueError(f"no demo traffic for domain {tenant.domain.pack!r} (tenant {tenant.tenant_id})")
    exception_type = rng.choices(names, weights=[_TRAFFIC[name].weight for name in names])[0]
    return generate_for_type(rng, tenant, exception_type, sequence=sequence, start=start)


def generate_stream(
    seed: int, tenants: Sequence[TenantView], count: int, *, start: datetime = DEMO_START
) -> Iterator[dict[str, Any]]:
    """`count` items `{"tenant_id", "exception"}`, tenants drawn uniformly; the same seed gives the same stream.

    Exception ids are unique within a stream (they end in the item's sequence number) and, through a
    token drawn from the seed's generator, differ between seeds. `start` moves only the timestamps and
    dates (occurred_at falls in the 12 hours before it), never the ids: pass the current time for a live
    demo so that date-window tools (settlement, reporting deadlines) see fresh dates. Raises ValueError
    for no tenants.
    """
    if not tenants:
        raise ValueError("generate_stream needs at least one tenant")
    rng = random.Random(seed)
    for sequence in range(count):
        tenant = rng.choice(tenants)
        yield {
            "tenant_id": tenant.tenant_id,
            "exception": generate_exception(rng, tenant, sequence=sequence, start=start),
        }
