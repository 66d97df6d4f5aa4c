"""Shared pools (securities, counterparties, custodians) and helpers of the demo traffic generators."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

DEMO_START = datetime(2025, 6, 4, 14, 0, tzinfo=UTC)

Attributes = dict[str, Any]
TypeGenerator = Callable[[random.Random, date], tuple[Attributes, str]]


# --- shared pools and helpers ---------------------------------------------------------------------


class _Security(NamedTuple):
    isin: str
    name: str
    currency: str
    csd: str
    unit_price: float


SECURITIES = (
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
CUSTODIANS = (
    "BNY Mellon",
    "State Street",
    "Citi Custody",
    "Northern Trust",
    "Clearstream",
    "Euroclear Bank",
)


def log_uniform(rng: random.Random, low: float, high: float) -> float:
    return round(low * (high / low) ** rng.random(), 2)


def weighted_choice(rng: random.Random, options: tuple[str, ...], weights: tuple[float, ...]) -> str:
    return rng.choices(options, weights=weights)[0]


def business_days_back(day: date, days: int) -> date:
    while days > 0:
        day -= timedelta(days=1)
        days -= day.weekday() < 5
    return day


def random_counterparty(rng: random.Random) -> Attributes:
    name, tier = rng.choice(_COUNTERPARTIES)
    return {"counterparty": name, "counterparty_tier": tier}


def random_trade_id(rng: random.Random, today: date) -> str:
    return rng.choice(
        (f"TRD-{today:%Y%m%d}-{rng.randint(1, 99999):05d}", f"MX-{rng.randint(7_000_000, 7_999_999)}")
    )


def describe(rng: random.Random, templates: tuple[str, ...], attributes: Attributes, **extra: Any) -> str:
    return rng.choice(templates).format(**attributes, **extra)


