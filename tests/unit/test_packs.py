"""The bundled domain and tenant packs: they load, cross-check, and resolve per tenant; broken packs fail clearly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from pipeline.errors import PackError, TenantSuspendedError, UnknownTenantError
from pipeline.packs import BUNDLED_PACK_DIR, PackRegistry, Severity, load_packs
from pipeline.tools import BUILTIN_TOOLS

FINANCE_TYPES = {
    "SETTLEMENT_FAIL",
    "TRADE_MISMATCH",
    "POSITION_BREAK",
    "CASH_BREAK",
    "REGULATORY_REPORT_REJECTION",
    "SECURITY_MASTER_MISMATCH",
    "CORPORATE_ACTION_DISCREPANCY",
    "MARGIN_CALL_DISPUTE",
    "UNCLASSIFIED_FINANCE",
}
HEALTHCARE_TYPES = {
    "MISSING_AUTHORIZATION",
    "CODE_MISMATCH",
    "EXPIRED_CREDENTIALS",
    "ELIGIBILITY_LAPSE",
    "DUPLICATE_THERAPY",
    "DUPLICATE_CLAIM",
    "TIMELY_FILING_EXCEEDED",
    "COORDINATION_OF_BENEFITS",
    "UNCLASSIFIED_HEALTHCARE",
}


@pytest.fixture(scope="module")
def registry() -> PackRegistry:
    return load_packs()


def test_bundled_packs_load(registry: PackRegistry) -> None:
    assert {name: pack.version for name, pack in registry.domains.items()} == {
        "finance": "1.0.0",
        "healthcare": "1.0.0",
    }
    assert set(registry.domains["finance"].exception_types) == FINANCE_TYPES
    assert set(registry.domains["healthcare"].exception_types) == HEALTHCARE_TYPES
    assert sorted(path.name for path in (BUNDLED_PACK_DIR / "tenants").glob("*.yaml")) == [
        "fin_acme.yaml",
        "fin_globex.yaml",
        "hc_meridian.yaml",
    ]


def test_every_tenant_resolves_to_its_domain(registry: PackRegistry) -> None:
    domains = {tenant_id: registry.view(tenant_id).domain.pack for tenant_id in registry.tenants}
    assert domains == {"FIN_ACME": "finance", "FIN_GLOBEX": "finance", "HC_MERIDIAN": "healthcare"}
    with pytest.raises(UnknownTenantError, match="'NOPE' is not registered"):
        registry.view("NOPE")


@pytest.mark.parametrize("domain", ["finance", "healthcare"])
def test_each_domain_has_eight_types_with_eight_examples(registry: PackRegistry, domain: str) -> None:
    pack = registry.domains[domain]
    short = {
        name: len(spec.examples)
        for name, spec in pack.exception_types.items()
        if not 8 <= len(spec.examples) <= 12
    }
    assert short == {}
    assert len(pack.exception_types) - 1 >= 8  # besides the fallback
    examples = [example for spec in pack.exception_types.values() for example in spec.examples]
    assert len(examples) == len(set(examples))


@pytest.mark.parametrize(
    ("domain", "fallback"), [("finance", "UNCLASSIFIED_FINANCE"), ("healthcare", "UNCLASSIFIED_HEALTHCARE")]
)
def test_fallback_type_escalates_at_medium(registry: PackRegistry, domain: str, fallback: str) -> None:
    pack = registry.domains[domain]
    spec = pack.exception_types[fallback]
    assert (pack.fallback_type, spec.default_severity, spec.playbook) == (fallback, Severity.MEDIUM, None)


@pytest.mark.parametrize("domain", ["finance", "healthcare"])
def test_keywords_are_lower_case_and_aliases_unambiguous(registry: PackRegistry, domain: str) -> None:
    pack = registry.domains[domain]
    upper = [kw for spec in pack.exception_types.values() for kw in spec.keywords if kw != kw.lower()]
    assert upper == []
    owners: dict[str, set[str]] = {}
    for name, spec in pack.exception_types.items():
        for alias in (name, *spec.aliases):
            owners.setdefault(alias.upper(), set()).add(name)
    assert {
        alias: types for alias, types in owners.items() if len(types) > 1
    } == {}  # case-insensitively unique
    keywords = [kw for spec in pack.exception_types.values() for kw in spec.keywords]
    assert len(keywords) == len(set(keywords))  # a keyword scores for one type only


@pytest.mark.parametrize("domain", ["finance", "healthcare"])
def test_every_playbook_tool_exists_and_builtins_are_implemented(registry: PackRegistry, domain: str) -> None:
    pack = registry.domains[domain]
    used = {step.tool for playbook in pack.playbooks.values() for step in playbook.steps if step.tool}
    assert used <= set(pack.tools)
    builtins = {tool.builtin for tool in pack.tools.values() if tool.kind == "builtin"}
    assert builtins <= set(BUILTIN_TOOLS)
    assert len(builtins) >= 5
    for name, tool in pack.tools.items():
        Draft202012Validator.check_schema(tool.input_schema)
        assert tool.input_schema["type"] == "object", name
        assert set(tool.input_schema["required"]) <= set(tool.input_schema["properties"]), name


@pytest.mark.parametrize("domain", ["finance", "healthcare"])
def test_notify_webhook_is_an_unused_http_tool(registry: PackRegistry, domain: str) -> None:
    pack = registry.domains[domain]
    webhook = pack.tools["notify_webhook"]
    assert (webhook.kind, webhook.url, webhook.method) == ("http", "http://127.0.0.1:8099/webhook", "POST")
    used = {step.tool for playbook in pack.playbooks.values() for step in playbook.steps}
    assert "notify_webhook" not in used


@pytest.mark.parametrize("domain", ["finance", "healthcare"])
def test_playbooks_are_ordered_and_end_with_a_status(registry: PackRegistry, domain: str) -> None:
    pack = registry.domains[domain]
    for name, playbook in pack.playbooks.items():
        assert 3 <= len(playbook.steps) <= 6, name
        assert playbook.steps[-1].action == "set_status", name
    endings = [playbook.steps[-1].params["status"] for playbook in pack.playbooks.values()]
    assert endings.count("resolved") > len(endings) / 2
    actionable = {name for name, spec in pack.exception_types.items() if spec.playbook}
    assert actionable == set(pack.exception_types) - {pack.fallback_type} - set(
        pack.guardrails.escalate_types
    )


def test_finance_guardrails_and_rules(registry: PackRegistry) -> None:
    pack = registry.domains["finance"]
    assert pack.guardrails.escalate_types == ("MARGIN_CALL_DISPUTE",)
    assert pack.guardrails.approval_severities == (Severity.CRITICAL,)
    assert set(pack.guardrails.pii_fields) == {
        "account_number",
        "iban",
        "client_name",
        "tax_id",
        "trader_email",
    }
    first = pack.severity_rules[0]
    assert (first.when.field, first.when.gte, first.set_to) == ("amount", 10_000_000, Severity.CRITICAL)
    assert pack.sla_minutes == {
        Severity.CRITICAL: 60,
        Severity.HIGH: 240,
        Severity.MEDIUM: 1440,
        Severity.LOW: 4320,
    }


def test_healthcare_guardrails(registry: PackRegistry) -> None:
    guardrails = registry.domains["healthcare"].guardrails
    assert set(guardrails.pii_fields) == {
        "patient_name",
        "member_id",
        "ssn",
        "date_of_birth",
        "address",
        "phone",
    }
    assert guardrails.max_auto_resolve_severity == Severity.MEDIUM


def test_tenant_overrides_apply(registry: PackRegistry) -> None:
    acme, globex = registry.view("FIN_ACME"), registry.view("FIN_GLOBEX")
    assert (acme.min_confidence, globex.min_confidence) == (0.6, 0.75)
    assert (acme.sla_minutes(Severity.HIGH), globex.sla_minutes(Severity.HIGH)) == (240, 120)
    assert globex.sla_minutes(Severity.MEDIUM) == 1440  # not overridden: the domain's
    assert (acme.default_severity("POSITION_BREAK"), globex.default_severity("POSITION_BREAK")) == (
        "MEDIUM",
        "HIGH",
    )
    assert acme.playbook_id_for("TRADE_MISMATCH") == "trade_mismatch_affirmation"
    assert globex.playbook_id_for("TRADE_MISMATCH") == "manual_break_review"
    assert (acme.tool_enabled("compare_trade_economics"), globex.tool_enabled("compare_trade_economics")) == (
        True,
        False,
    )
    assert [rule.name for rule in acme.approval_rules] == ["large_cash_break", "tier_one_trade_break"]
    assert (acme.approval_rules[0].when.field, acme.approval_rules[0].when.gte) == ("amount", 5_000_000)
    meridian = registry.view("HC_MERIDIAN")
    assert meridian.approval_rules[0].when.exception_types == ("DUPLICATE_THERAPY",)
    assert (meridian.sla_minutes(Severity.HIGH), meridian.tenant.rate_limit.events_per_s) == (720, 800)



def test_a_view_follows_a_tenant_replaced_at_run_time() -> None:
    """Views are reused while the tenant's pack is the registry's; a refresh from the `tenants` table
    replaces the pack, and the next view must be of the new one (suspended here)."""
    registry = load_packs()
    before = registry.view("FIN_ACME")
    assert registry.view("FIN_ACME") is before
    registry.tenants["FIN_ACME"] = before.tenant.model_copy(update={"status": "suspended"})
    with pytest.raises(TenantSuspendedError, match="FIN_ACME is suspended"):
        registry.view("FIN_ACME")
    stricter = before.tenant.overrides.model_copy(update={"min_confidence": 0.9})
    registry.tenants["FIN_ACME"] = before.tenant.model_copy(update={"overrides": stricter})
    assert registry.view("FIN_ACME").min_confidence == 0.9

@pytest.mark.parametrize("tenant_id", ["FIN_ACME", "FIN_GLOBEX", "HC_MERIDIAN"])
def test_tenants_enable_every_tool_their_playbooks_call(registry: PackRegistry, tenant_id: str) -> None:
    view = registry.view(tenant_id)
    needed = set()
    for type_name in view.domain.exception_types:
        playbook_id = view.playbook_id_for(type_name)
        if playbook_id:
            needed |= {step.tool for step in view.playbook(playbook_id).steps if step.tool}
    assert {tool for tool in needed if not view.tool_enabled(tool)} == set()


# --- broken packs in an operator directory ---------------------------------------------------------


def bundled(name: str) -> dict[str, Any]:
    return yaml.safe_load((BUNDLED_PACK_DIR / name).read_text(encoding="utf-8"))


def write(path: Path, document: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def test_an_operator_pack_replaces_the_bundled_one(tmp_path: Path) -> None:
    document = bundled("finance.yaml")
    document["description"] = "operator copy"
    write(tmp_path / "finance.yaml", document)
    assert load_packs(tmp_path).view("FIN_ACME").domain.description == "operator copy"
    document["version"] = "1.1.0"
    write(tmp_path / "finance.yaml", document)
    with pytest.raises(PackError, match="pins finance 1.0.0, loaded 1.1.0"):
        load_packs(tmp_path)  # the bundled finance tenants pin 1.0.0


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    document = bundled("finance.yaml")
    document["exception_types"]["CASH_BREAK"]["colour"] = "red"
    path = write(tmp_path / "finance.yaml", document)
    with pytest.raises(PackError) as caught:
        load_packs(tmp_path)
    assert str(path) in str(caught.value)
    assert "exception_types.CASH_BREAK.colour: Extra inputs are not permitted" in str(caught.value)


def test_bad_reference_names_file_and_step(tmp_path: Path) -> None:
    document = bundled("healthcare.yaml")
    document["playbooks"]["code_validation"]["steps"][1]["tool"] = "no_such_tool"
    path = write(tmp_path / "healthcare.yaml", document)
    with pytest.raises(PackError) as caught:
        load_packs(tmp_path)
    assert str(path) in str(caught.value)
    assert "playbooks.code_validation.steps[1].tool 'no_such_tool' is not defined" in str(caught.value)


def test_bad_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "finance.yaml"
    path.write_text("pack: finance\nexception_types: [unclosed\n", encoding="utf-8")
    with pytest.raises(PackError, match="not valid YAML") as caught:
        load_packs(tmp_path)
    assert str(path) in str(caught.value)


def test_tenant_with_an_unknown_tool_names_the_tenant_and_key(tmp_path: Path) -> None:
    document = bundled("tenants/fin_acme.yaml")
    document.update(tenant_id="FIN_TEST", enabled_tools=["create_ticket", "validate_claim_codes"])
    write(tmp_path / "tenants" / "fin_test.yaml", document)
    with pytest.raises(
        PackError, match="tenant pack FIN_TEST: enabled_tools: 'validate_claim_codes' is not a finance tool"
    ):
        load_packs(tmp_path)


def test_a_valid_operator_tenant_is_added(tmp_path: Path) -> None:
    document = bundled("tenants/hc_meridian.yaml")
    document.update(tenant_id="HC_TEST", name="Test Health", overrides={"min_confidence": 0.9})
    write(tmp_path / "tenants" / "hc_test.yaml", document)
    registry = load_packs(tmp_path)
    assert sorted(registry.tenants) == ["FIN_ACME", "FIN_GLOBEX", "HC_MERIDIAN", "HC_TEST"]
    assert registry.view("HC_TEST").min_confidence == 0.9
