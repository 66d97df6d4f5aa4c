"""Demo traffic: reproducible, unique, consistent with the packs, and every playbook's tool inputs validate."""

from __future__ import annotations

import random
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from pipeline.demo_traffic import (
    DEMO_START,
    demo_types,
    generate_exception,
    generate_for_type,
    generate_stream,
)
from pipeline.packs import PackRegistry, Severity, TenantView, load_packs
from pipeline.packs.models import DomainPack
from pipeline.tools import BUILTIN_TOOLS, ToolContext
from pipeline.tools.templates import render_template
from pipeline.triage.severity import assess_severity

ATTRIBUTES = {
    "SETTLEMENT_FAIL": {"amount", "counterparty", "counterparty_tier", "csd", "currency", "days_outstanding",
                        "fail_reason", "intended_settlement_date", "isin", "quantity", "trade_id"},
    "TRADE_MISMATCH": {"amount", "counterparty", "counterparty_tier", "currency", "isin", "our_price", "our_quantity",
                       "our_settlement_date", "their_price", "their_quantity", "their_settlement_date", "trade_id"},
    "POSITION_BREAK": {"account_id", "amount", "currency", "custodian", "custodian_quantity", "days_outstanding",
                       "internal_quantity", "isin", "pending_settlement_quantity"},
    "CASH_BREAK": {"account_id", "actual_balance", "amount", "bank", "currency", "days_outstanding",
                   "expected_balance", "open_item_amounts", "value_date"},
    "REGULATORY_REPORT_REJECTION": {"amount", "currency", "days_outstanding", "regime", "rejection_code",
                                    "report_id", "trade_date", "trade_id"},
    "SECURITY_MASTER_MISMATCH": {"cusip", "days_outstanding", "field_in_dispute", "isin", "vendor"},
    "CORPORATE_ACTION_DISCREPANCY": {"amount", "ca_event_id", "currency", "custodian", "days_outstanding",
                                     "holding_quantity", "isin", "pay_date", "rate_per_unit", "received_amount",
                                     "withholding_tax_rate"},
    "MARGIN_CALL_DISPUTE": {"amount", "call_id", "counterparty", "counterparty_tier", "csa_id", "currency",
                            "days_outstanding", "margin_type", "our_exposure", "their_exposure"},
    "UNCLASSIFIED_FINANCE": {"reference"},
    "MISSING_AUTHORIZATION": {"cpt_code", "icd10_code"},
    "CODE_MISMATCH": {"cpt_code", "icd10_code"},
    "EXPIRED_CREDENTIALS": {"credential_expiry", "credential_type", "days_outstanding"},
    "ELIGIBILITY_LAPSE": {"coverage_end", "coverage_start"},
    "DUPLICATE_THERAPY": {"drug_class", "first_days_supply", "first_drug", "first_fill_date", "second_days_supply",
                          "second_drug", "second_fill_date"},
    "DUPLICATE_CLAIM": {"cpt_code", "original_billed_amount", "original_claim_id", "original_cpt_code",
                        "original_service_date"},
    "TIMELY_FILING_EXCEEDED": {"days_outstanding", "filing_limit_days"},
    "COORDINATION_OF_BENEFITS": {"allowed_amount", "primary_paid_amount", "primary_payer"},
    "UNCLASSIFIED_HEALTHCARE": set(),
}  # fmt: skip
CLAIM = {
    "billed_amount",
    "claim_id",
    "plan_type",
    "provider_name",
    "provider_npi",
    "received_date",
    "service_date",
}
SAMPLES_PER_TYPE = 60


@pytest.fixture(scope="module")
def registry() -> PackRegistry:
    return load_packs()


@pytest.fixture(scope="module")
def views(registry: PackRegistry) -> list[TenantView]:
    return [registry.view(tenant_id) for tenant_id in sorted(registry.tenants)]


def expected_attributes(view: TenantView, exception_type: str) -> set[str]:
    return ATTRIBUTES[exception_type] | (CLAIM if view.domain.pack == "healthcare" else set())


def labelled(view: TenantView, seed: int = 11) -> list[tuple[str, dict[str, Any]]]:
    rng = random.Random(seed)
    return [
        (name, generate_for_type(rng, view, name, sequence=i))
        for name in demo_types(view)
        for i in range(SAMPLES_PER_TYPE)
    ]


def severity(view: TenantView, exception_type: str, exception: dict[str, Any]) -> Severity:
    return assess_severity(view, exception_type, exception["attributes"], exception["description"])[0]


def test_same_seed_same_stream_and_another_seed_differs(views: list[TenantView]) -> None:
    first = list(generate_stream(42, views, 300))
    assert first == list(generate_stream(42, views, 300))
    assert first != list(generate_stream(43, views, 300))
    assert [item["exception"]["exception_id"].rsplit("-", 1)[1] for item in first[:3]] == [
        "0000000",
        "0000001",
        "0000002",
    ]


def test_ids_are_unique_within_and_across_streams(views: list[TenantView]) -> None:
    one = [item["exception"]["exception_id"] for item in generate_stream(1, views, 3000)]
    two = [item["exception"]["exception_id"] for item in generate_stream(2, views, 3000)]
    assert len(set(one)) == 3000
    assert set(one).isdisjoint(two)
    envelope_id = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")  # EventEnvelope.exception_id
    assert all(envelope_id.match(exception_id) for exception_id in one)


def test_stream_shape_tenants_and_type_hints(views: list[TenantView]) -> None:
    items = list(generate_stream(7, views, 3000))
    assert {item["tenant_id"] for item in items} == {"FIN_ACME", "FIN_GLOBEX", "HC_MERIDIAN"}
    required = {"exception_id", "source_system", "description", "occurred_at", "attributes"}
    assert all(required <= set(item["exception"]) <= required | {"exception_type"} for item in items)
    by_id = {view.tenant_id: view for view in views}
    kinds = Counter()
    for item in items:
        hint, types = item["exception"].get("exception_type"), by_id[item["tenant_id"]].domain.exception_types
        aliases = {alias for spec in types.values() for alias in spec.aliases}
        kinds[
            "omitted"
            if hint is None
            else "canonical"
            if hint in types
            else "alias"
            if hint in aliases
            else "bad"
        ] += 1
    assert kinds["bad"] == 0
    assert 0.06 < kinds["omitted"] / 3000 < 0.14
    assert 0.06 < kinds["alias"] / 3000 < 0.14
    assert kinds["canonical"] / 3000 > 0.7


def test_stream_covers_every_type_of_each_domain(views: list[TenantView]) -> None:
    seen: dict[str, set[str]] = {"finance": set(), "healthcare": set()}
    by_id = {view.tenant_id: view for view in views}
    for item in generate_stream(5, views, 3000):
        view, hint = by_id[item["tenant_id"]], item["exception"].get("exception_type")
        if hint in view.domain.exception_types:
            seen[view.domain.pack].add(hint)
    assert seen == {pack: set(view.domain.exception_types) for view in views for pack in [view.domain.pack]}


@pytest.mark.parametrize("tenant_id", ["FIN_ACME", "HC_MERIDIAN"])
def test_each_type_carries_exactly_its_attributes(registry: PackRegistry, tenant_id: str) -> None:
    view = registry.view(tenant_id)
    pii = set(view.domain.guardrails.pii_fields)
    assert set(demo_types(view)) == set(view.domain.exception_types)
    for name, exception in labelled(view):
        assert set(exception["attributes"]) - pii == expected_attributes(view, name), name


@pytest.mark.parametrize("tenant_id", ["FIN_ACME", "FIN_GLOBEX", "HC_MERIDIAN"])
def test_playbook_tool_inputs_validate_and_tools_give_both_outcomes(
    registry: PackRegistry, tenant_id: str
) -> None:
    view = registry.view(tenant_id)
    outcomes: dict[str, set[str]] = {}
    for name, exception in labelled(view):
        playbook_id = view.playbook_id_for(name)
        if playbook_id is None:
            continue
        context = {
            "exception_id": exception["exception_id"],
            "tenant_id": view.tenant_id,
            "severity": severity(view, name, exception).value,
            "exception_type": name,
            "attributes": exception["attributes"],
            "source_system": exception["source_system"],
        }
        for step in view.playbook(playbook_id).steps:
            render_template(step.params, context)  # every template in the step resolves
            if step.action != "call_tool":
                continue
            tool = view.tool(step.tool)
            data = render_template(step.input, context)
            errors = [error.message for error in Draft202012Validator(tool.input_schema).iter_errors(data)]
            assert (name, step.tool, errors) == (name, step.tool, [])
            ctx = ToolContext(
                view.tenant_id, exception["exception_id"], f"exec-{exception['exception_id']}", DEMO_START
            )
            outcomes.setdefault(step.tool, set()).add(BUILTIN_TOOLS[tool.builtin](data, ctx)["outcome"])
    assert outcomes.pop("create_ticket") == {"succeeded"}
    assert outcomes and all(seen == {"succeeded", "failed"} for seen in outcomes.values()), outcomes


@pytest.mark.parametrize("tenant_id", ["FIN_ACME", "HC_MERIDIAN"])
def test_every_severity_occurs(registry: PackRegistry, tenant_id: str) -> None:
    view = registry.view(tenant_id)
    spread = Counter(severity(view, name, exception) for name, exception in labelled(view))
    assert set(spread) == set(Severity)
    assert min(spread.values()) >= 0.03 * sum(spread.values())


@pytest.mark.parametrize("tenant_id", ["FIN_ACME", "HC_MERIDIAN"])
def test_pii_appears_only_in_attributes(registry: PackRegistry, tenant_id: str) -> None:
    view = registry.view(tenant_id)
    pii_fields = set(view.domain.guardrails.pii_fields)
    seen: set[str] = set()
    for _, exception in labelled(view):
        pii = {key: value for key, value in exception["attributes"].items() if key in pii_fields}
        seen |= set(pii)
        assert not any(str(value) in exception["description"] for value in pii.values())
    assert seen == pii_fields


@pytest.mark.parametrize("tenant_id", ["FIN_ACME", "HC_MERIDIAN"])
def test_descriptions_are_not_the_pack_examples(registry: PackRegistry, tenant_id: str) -> None:
    view = registry.view(tenant_id)
    examples = {example for spec in view.domain.exception_types.values() for example in spec.examples}
    descriptions = {exception["description"] for _, exception in labelled(view)}
    assert descriptions.isdisjoint(examples)
    assert len(descriptions) > 0.95 * len(demo_types(view)) * SAMPLES_PER_TYPE


@pytest.mark.parametrize("tenant_id", ["FIN_ACME", "HC_MERIDIAN"])
def test_descriptions_carry_a_keyword_of_their_type(registry: PackRegistry, tenant_id: str) -> None:
    view = registry.view(tenant_id)

    def words(text: str) -> str:
        return " " + " ".join(re.findall(r"[a-z0-9]+", text.lower())) + " "

    missing = [
        (name, exception["description"])
        for name, exception in labelled(view)
        if name != view.domain.fallback_type
        and not any(
            words(keyword) in words(exception["description"])
            for keyword in view.domain.exception_types[name].keywords
        )
    ]
    assert missing == []


def test_occurred_at_is_utc_and_before_start(views: list[TenantView]) -> None:
    start = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)
    for item in generate_stream(9, views, 500, start=start):
        occurred = datetime.fromisoformat(item["exception"]["occurred_at"])
        assert item["exception"]["occurred_at"].endswith("Z")
        assert start - timedelta(hours=12) <= occurred < start
    ids = [item["exception"]["exception_id"] for item in generate_stream(9, views, 50, start=start)]
    assert ids == [
        item["exception"]["exception_id"] for item in generate_stream(9, views, 50)
    ]  # start moves dates only


def test_refuses_types_and_domains_it_cannot_generate(registry: PackRegistry) -> None:
    view = registry.view("FIN_ACME")
    with pytest.raises(ValueError, match="no demo traffic for 'CODE_MISMATCH' in tenant FIN_ACME"):
        generate_for_type(random.Random(1), view, "CODE_MISMATCH", sequence=0)
    odd = DomainPack.model_validate(
        {
            "pack": "insurance",
            "version": "1.0.0",
            "description": "no generator",
            "exception_types": {
                "OTHER": {"description": "x", "default_severity": "LOW", "examples": ["a", "b", "c"]}
            },
            "fallback_type": "OTHER",
            "sla_minutes": {"LOW": 1, "MEDIUM": 1, "HIGH": 1, "CRITICAL": 1},
        }
    )
    with pytest.raises(ValueError, match="no demo traffic for domain 'insurance'"):
        generate_exception(random.Random(1), TenantView(tenant=view.tenant, domain=odd), sequence=0)
    with pytest.raises(ValueError, match="at least one tenant"):
        next(generate_stream(1, [], 1))
