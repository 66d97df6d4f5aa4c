"""Demo traffic for the healthcare pack: one generator per claims exception type, each returning
the attributes its severity rules and tools read, and a description."""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import NamedTuple

from pipeline.demo_traffic.common import Attributes, describe, log_uniform, weighted_choice
from pipeline.tools.builtin import (
    CPT_DIAGNOSIS_PREFIXES,
    PRIOR_AUTH_CPT,
    luhn_check_digit,
)


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
        return log_uniform(rng, 250_000, 600_000)
    if roll < 0.12:
        return log_uniform(rng, 50_000, 250_000)
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


def missing_authorization(rng: random.Random, today: date) -> tuple[Attributes, str]:
    # Mostly procedures that do need prior auth; the rest are false alarms the tool clears.
    needs_auth = rng.random() < 0.75
    cpt = rng.choice([code for code in _PROCEDURES if (code in PRIOR_AUTH_CPT) == needs_auth])
    provider = rng.choice([provider for provider in _PROVIDERS if cpt in provider.procedures])
    attributes = _claim(rng, today, provider)
    attributes.update(cpt_code=cpt, icd10_code=rng.choice(_DIAGNOSES[cpt]), billed_amount=_billed(rng, cpt))
    extra = {"procedure": _PROCEDURES[cpt][0], "plan": _PLANS[attributes["plan_type"]]}
    return attributes, describe(rng, _MISSING_AUTH_TEXTS, attributes, **extra)


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
    kind = weighted_choice(rng, ("consistent", "inconsistent", "bad_icd10", "bad_cpt"), (35, 45, 10, 10))
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


def code_mismatch(rng: random.Random, today: date) -> tuple[Attributes, str]:
    provider = rng.choice(_PROVIDERS)
    cpt, icd10 = _code_pair(rng, rng.choice(provider.procedures))
    attributes = _claim(rng, today, provider)
    attributes.update(cpt_code=cpt, icd10_code=icd10, billed_amount=_billed(rng, provider.procedures[0]))
    procedure = _PROCEDURES.get(cpt, ("unlisted procedure",))[0]
    return attributes, describe(rng, _CODE_MISMATCH_TEXTS, attributes, procedure=procedure)


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


def expired_credentials(rng: random.Random, today: date) -> tuple[Attributes, str]:
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
    return attributes, describe(rng, _CREDENTIAL_TEXTS, attributes, credential=_CREDENTIALS[kind])


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


def eligibility_lapse(rng: random.Random, today: date) -> tuple[Attributes, str]:
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
    return attributes, describe(rng, _ELIGIBILITY_TEXTS, attributes, **extra)


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


def duplicate_therapy(rng: random.Random, today: date) -> tuple[Attributes, str]:
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
    return attributes, describe(rng, _THERAPY_TEXTS, attributes, label=label)


_DUPLICATE_CLAIM_TEXTS = (
    "Claim {claim_id} looks like a duplicate of {original_claim_id}: {provider_name}, CPT {cpt_code}, DOS "
    "{service_date}, ${billed_amount:,.2f}.",
    "Suspected duplicate submission from {provider_name}: {claim_id} vs already paid {original_claim_id} (DOS "
    "{original_service_date}).",
    "Duplicate claim edit fired on {claim_id}; original {original_claim_id} billed ${original_billed_amount:,.2f} "
    "for {original_cpt_code}.",
)


def duplicate_claim(rng: random.Random, today: date) -> tuple[Attributes, str]:
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
    differing = weighted_choice(rng, ("none", "service_date", "cpt_code", "billed_amount"), (55, 15, 10, 20))
    if differing == "service_date":
        service = date.fromisoformat(attributes["service_date"])
        attributes["original_service_date"] = (service - timedelta(days=rng.randint(1, 14))).isoformat()
    if differing == "cpt_code":
        attributes["original_cpt_code"] = rng.choice([code for code in _PROCEDURES if code != cpt])
    if differing == "billed_amount":
        attributes["original_billed_amount"] = round(billed * rng.uniform(0.7, 0.95), 2)
    return attributes, describe(rng, _DUPLICATE_CLAIM_TEXTS, attributes)


_FILING_LIMITS = {"commercial": 180, "medicare_advantage": 365, "medicaid": 120, "marketplace": 90}
_TIMELY_FILING_TEXTS = (
    "Claim {claim_id} received {received_date} for date of service {service_date}, past the {filing_limit_days}-day "
    "timely filing limit.",
    "Timely filing denial on {claim_id} ({plan}); {provider_name} requests reconsideration, billed "
    "${billed_amount:,.2f}.",
    "Late submission flagged: {elapsed} days between service ({service_date}) and receipt ({received_date}) on "
    "claim {claim_id}.",
)


def timely_filing(rng: random.Random, today: date) -> tuple[Attributes, str]:
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
    return attributes, describe(
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


def coordination_of_benefits(rng: random.Random, today: date) -> tuple[Attributes, str]:
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
    return attributes, describe(rng, _COB_TEXTS, attributes, reason=reason)


_UNCLASSIFIED_HEALTHCARE_TEXTS = (
    "Provider office called about claim {claim_id}: status not visible on the portal, please review.",
    "Claims query from the call centre about {claim_id}; member says the statement looks wrong, no details given.",
    "Examiner cannot save notes on claim {claim_id}; manual review requested.",
)


def unclassified_healthcare(rng: random.Random, today: date) -> tuple[Attributes, str]:
    attributes = _claim(rng, today)
    attributes["billed_amount"] = _billed(rng)
    return attributes, describe(rng, _UNCLASSIFIED_HEALTHCARE_TEXTS, attributes)


