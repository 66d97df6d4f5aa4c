"""Assembling demo exceptions: traffic weights and source systems per type, PII for intake to
redact, type hints, and the reproducible stream."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple

from pipeline.demo_traffic.common import DEMO_START, Attributes, TypeGenerator
from pipeline.demo_traffic.finance import (
    cash_break,
    corporate_action,
    margin_call_dispute,
    position_break,
    regulatory_rejection,
    security_master_mismatch,
    settlement_fail,
    trade_mismatch,
    unclassified_finance,
)
from pipeline.demo_traffic.healthcare import (
    code_mismatch,
    coordination_of_benefits,
    duplicate_claim,
    duplicate_therapy,
    eligibility_lapse,
    expired_credentials,
    missing_authorization,
    timely_filing,
    unclassified_healthcare,
)
from pipeline.packs.loader import TenantView


class _TypeTraffic(NamedTuple):
    weight: float
    generate: TypeGenerator
    sources: tuple[str, ...]


_TRAFFIC: dict[str, _TypeTraffic] = {
    "SETTLEMENT_FAIL": _TypeTraffic(22, settlement_fail, ("swift-gateway", "murex", "calypso")),
    "TRADE_MISMATCH": _TypeTraffic(15, trade_mismatch, ("dtcc-ctm", "murex", "calypso")),
    "POSITION_BREAK": _TypeTraffic(12, position_break, ("tlm-recs", "duco")),
    "CASH_BREAK": _TypeTraffic(15, cash_break, ("tlm-recs", "swift-gateway")),
    "REGULATORY_REPORT_REJECTION": _TypeTraffic(
        10, regulatory_rejection, ("emir-hub", "cat-reporter", "trace-gateway")
    ),
    "SECURITY_MASTER_MISMATCH": _TypeTraffic(8, security_master_mismatch, ("golden-source", "murex")),
    "CORPORATE_ACTION_DISCREPANCY": _TypeTraffic(8, corporate_action, ("ca-hub", "swift-gateway")),
    "MARGIN_CALL_DISPUTE": _TypeTraffic(6, margin_call_dispute, ("acadiasoft", "calypso-collateral")),
    "UNCLASSIFIED_FINANCE": _TypeTraffic(4, unclassified_finance, ("ops-portal",)),
    "MISSING_AUTHORIZATION": _TypeTraffic(16, missing_authorization, ("facets", "epic-claims")),
    "CODE_MISMATCH": _TypeTraffic(16, code_mismatch, ("facets", "edi-837-gateway")),
    "EXPIRED_CREDENTIALS": _TypeTraffic(8, expired_credentials, ("credentialing-hub", "facets")),
    "ELIGIBILITY_LAPSE": _TypeTraffic(14, eligibility_lapse, ("facets", "availity")),
    "DUPLICATE_THERAPY": _TypeTraffic(10, duplicate_therapy, ("pbm-gateway",)),
    "DUPLICATE_CLAIM": _TypeTraffic(14, duplicate_claim, ("facets", "edi-837-gateway")),
    "TIMELY_FILING_EXCEEDED": _TypeTraffic(10, timely_filing, ("facets", "epic-claims")),
    "COORDINATION_OF_BENEFITS": _TypeTraffic(8, coordination_of_benefits, ("facets", "availity")),
    "UNCLASSIFIED_HEALTHCARE": _TypeTraffic(4, unclassified_healthcare, ("member-services",)),
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
