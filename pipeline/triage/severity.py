"""Severity: the type's default (tenant override first), then the pack's severity rules in order."""

from __future__ import annotations

from typing import Any

from pipeline.packs import Severity, TenantView
from pipeline.packs.conditions import matches


def assess_severity(
    tenant: TenantView, exception_type: str, attributes: dict[str, Any], description: str
) -> tuple[Severity, list[str]]:
    """The severity and the names of the rules that set it. First `set_to` rule wins; `raise_to`
    rules before it only ever raise."""
    severity = tenant.default_severity(exception_type)
    applied: list[str] = []
    for rule in tenant.domain.severity_rules:
        if not matches(rule.when, exception_type, attributes, description):
            continue
        if rule.set_to is not None:
            return rule.set_to, [*applied, rule.name]
        if rule.raise_to is not None and rule.raise_to.rank > severity.rank:
            severity = rule.raise_to
            applied.append(rule.name)
    return severity, applied
