"""Demo traffic for the finance pack: one generator per capital-markets exception type, each
returning the attributes its severity rules and tools read, and a description."""

from __future__ import annotations

import random
from datetime import date

from pipeline.demo_traffic.common import (
    CUSTODIANS,
    SECURITIES,
    Attributes,
    business_days_back,
    describe,
    log_uniform,
    random_counterparty,
    random_trade_id,
    weighted_choice,
)
from pipeline.tools.builtin import (
    add_business_days,
    cusip_check_digit,
    isin_check_digit,
)

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


def settlement_fail(rng: random.Random, today: date) -> tuple[Attributes, str]:
    security = rng.choice(SECURITIES)
    quantity = max(1, round(log_uniform(rng, 5_000, 40_000_000) / security.unit_price))
    days = rng.choice((0, 1, 1, 2, 3, 5, 7))
    attributes = {
        "trade_id": random_trade_id(rng, today),
        "isin": security.isin,
        "quantity": quantity,
        "amount": round(quantity * security.unit_price, 2),
        "currency": security.currency,
        **random_counterparty(rng),
        "csd": security.csd,
        "intended_settlement_date": business_days_back(today, days).isoformat(),
        "days_outstanding": days,
        "fail_reason": rng.choice(_FAIL_REASONS),
    }
    buy_in = " Counterparty has warned of a buy-in." if days >= 4 else ""
    direction = rng.choice(("Delivery versus payment", "Receipt versus payment"))
    return attributes, describe(
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


def trade_mismatch(rng: random.Random, today: date) -> tuple[Attributes, str]:
    security = rng.choice(SECURITIES)
    quantity = max(1, round(log_uniform(rng, 20_000, 30_000_000) / security.unit_price))
    price = round(security.unit_price * rng.uniform(0.98, 1.02), 4)
    settle = add_business_days(today, rng.choice((1, 2)))
    kind = rng.choice(("price_within_tolerance", "price", "quantity", "settlement_date"))
    bps = rng.uniform(0.5, 4.5) if kind == "price_within_tolerance" else rng.uniform(8, 150)
    attributes = {
        "trade_id": random_trade_id(rng, today),
        **random_counterparty(rng),
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
    return attributes, describe(
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


def position_break(rng: random.Random, today: date) -> tuple[Attributes, str]:
    security = rng.choice(SECURITIES)
    custodian = rng.choice(CUSTODIANS)
    break_quantity = max(1, round(log_uniform(rng, 2_000, 30_000_000) / security.unit_price)) * rng.choice(
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
    return attributes, describe(
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


def cash_break(rng: random.Random, today: date) -> tuple[Attributes, str]:
    code, currency, bank = rng.choice(_NOSTROS)
    break_amount = log_uniform(rng, 100, 40_000_000) * rng.choice((1, -1))
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
        "value_date": business_days_back(today, days).isoformat(),
        "days_outstanding": days,
    }
    extra = {"statement": rng.choice(("MT950", "MT940", "camt.053")), "item_count": len(items)}
    extra["cause"] = rng.choice(("an unmatched outgoing wire", "bank charges", "a value-date difference"))
    return attributes, describe(rng, _CASH_BREAK_TEXTS, attributes, **extra)


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


def regulatory_rejection(rng: random.Random, today: date) -> tuple[Attributes, str]:
    regime = rng.choice(tuple(_REJECTION_CODES))
    days = rng.choice((0, 0, 0, 1, 1, 2, 3))
    attributes = {
        "report_id": f"REP-{rng.randint(10_000_000, 99_999_999)}",
        "regime": regime,
        "rejection_code": rng.choice(_REJECTION_CODES[regime]),
        "trade_id": random_trade_id(rng, today),
        "trade_date": business_days_back(today, days + rng.randint(0, 1)).isoformat(),
        "days_outstanding": days,
        "amount": log_uniform(rng, 100_000, 250_000_000),
        "currency": "USD" if regime in ("CAT", "TRACE") else "EUR",
    }
    return attributes, describe(rng, _REG_REJECTION_TEXTS, attributes, repository=_REPOSITORIES[regime])


_ISSUERS = (("037833", "Apple Inc"), ("594918", "Microsoft Corp"), ("023135", "Amazon.com Inc"),
            ("46625H", "JPMorgan Chase & Co"), ("88160R", "Tesla Inc"))  # fmt: skip
_STATIC_FIELDS = ("coupon rate", "maturity date", "day count convention", "issue price", "country of risk")
_SECURITY_MASTER_TEXTS = (
    "Static data break on {isin} ({security}): {field} differs between the security master and the {vendor} feed.",
    "Security master record for CUSIP {cusip} / ISIN {isin} disagrees with {vendor} on {field}; trades "
    "referencing it are on hold.",
    "Overnight {vendor} load flagged {isin} (CUSIP {cusip}) for reference data review: {field} mismatch.",
)


def security_master_mismatch(rng: random.Random, today: date) -> tuple[Attributes, str]:
    issuer, name = rng.choice(_ISSUERS)
    issue = "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(2))
    cusip = issuer + issue + str(cusip_check_digit(issuer + issue))
    isin = "US" + cusip + str(isin_check_digit("US" + cusip))
    defect = weighted_choice(rng, ("none", "isin_check", "cusip_check", "other_cusip"), (45, 30, 15, 10))
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
    return attributes, describe(
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


def corporate_action(rng: random.Random, today: date) -> tuple[Attributes, str]:
    security = rng.choice(SECURITIES)
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
        "custodian": rng.choice(CUSTODIANS),
        "holding_quantity": holding,
        "rate_per_unit": rate,
        "withholding_tax_rate": wht,
        "received_amount": round(received, 2),
        "amount": round(abs(net - received), 2),
        "currency": security.currency,
        "pay_date": business_days_back(today, rng.randint(0, 8)).isoformat(),
        "days_outstanding": rng.choice((0, 1, 3, 5, 12)),
    }
    extra = {
        "event": "Coupon" if is_bond else "Cash dividend",
        "security": security.name,
        "wht_percent": wht * 100,
    }
    return attributes, describe(rng, _CA_TEXTS, attributes, **extra)


_MARGIN_TEXTS = (
    "{counterparty} disputes {margin_type} call {call_id} under {csa_id}: our exposure {currency} "
    "{our_exposure:,.0f}, theirs {currency} {their_exposure:,.0f}.",
    "Margin call {call_id} only partially agreed by {counterparty}; disputed amount {currency} {amount:,.0f} "
    "outstanding {days_outstanding} day(s).",
    "Collateral dispute on {csa_id} with {counterparty}: mark-to-market difference of {currency} {amount:,.0f} "
    "on the {margin_type} portfolio.",
)


def margin_call_dispute(rng: random.Random, today: date) -> tuple[Attributes, str]:
    disputed = log_uniform(rng, 250_000, 60_000_000)
    ours = round(disputed + rng.uniform(0, 80_000_000), 2)
    attributes = {
        "call_id": f"MC-{today:%Y%m%d}-{rng.randint(1, 400):03d}",
        **random_counterparty(rng),
        "csa_id": f"CSA-{rng.randint(2012, 2024)}-VM-{rng.randint(1, 9999):04d}",
        "margin_type": rng.choice(("variation margin", "initial margin")),
        "our_exposure": ours,
        "their_exposure": round(ours - disputed, 2),
        "amount": disputed,
        "currency": rng.choice(("USD", "EUR", "GBP")),
        "days_outstanding": rng.choice((0, 1, 2, 5)),
    }
    return attributes, describe(rng, _MARGIN_TEXTS, attributes)


_UNCLASSIFIED_FINANCE_TEXTS = (
    "Ops query {reference}: {team} says the {system} screen shows figures that differ from yesterday; please investigate.",
    "Manual review requested by {team} for item {reference}; no further details provided.",
    "{system} end-of-day batch finished with warnings for {team}, reference {reference}.",
)


def unclassified_finance(rng: random.Random, today: date) -> tuple[Attributes, str]:
    attributes = {"reference": f"OPS-{today.year}-{rng.randint(10_000, 99_999)}"}
    extra = {
        "team": rng.choice(("fund accounting", "the FX desk", "client services")),
        "system": rng.choice(("Murex", "Calypso", "TLM")),
    }
    return attributes, describe(rng, _UNCLASSIFIED_FINANCE_TEXTS, attributes, **extra)


