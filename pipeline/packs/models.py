"""Domain packs and tenant packs: the versioned YAML that holds all domain knowledge.

A *domain pack* (finance, healthcare) defines exception types with descriptions and example texts,
severity rules, SLA windows per severity, guardrails, playbooks and tools. A *tenant pack* picks a
domain pack and adds overrides, approval rules, enabled tools and rate limits. Every model rejects
unknown keys, so a typo in a pack fails at load time naming the file and the key.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Severity(StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExceptionTypeSpec(_Strict):
    description: str = Field(min_length=1)
    default_severity: Severity
    aliases: tuple[str, ...] = Field(default=(), description="type hints from source systems that mean this type")
    keywords: tuple[str, ...] = Field(default=(), description="lower-case words or phrases the rules backend scores")
    examples: tuple[str, ...] = Field(min_length=3, description="realistic example texts (model prototypes)")
    playbook: str | None = Field(default=None, description="playbook id; None means humans handle it (escalate)")


class Condition(_Strict):
    """All set fields must hold. `field` is a dotted path into the normalised exception's `attributes`."""

    exception_types: tuple[str, ...] = ()
    field: str | None = None
    gte: float | None = None
    lte: float | None = None
    equals: str | float | bool | None = None
    one_of: tuple[str, ...] = ()
    text_contains: tuple[str, ...] = Field(default=(), description="any of these in the description (case-insensitive)")

    @model_validator(mode="after")
    def _field_needed(self) -> Condition:
        needs_field = self.gte is not None or self.lte is not None or self.equals is not None or self.one_of
        if needs_field and not self.field:
            raise ValueError("a comparison (gte, lte, equals, one_of) needs `field`")
        return self


class SeverityRule(_Strict):
    """First matching rule wins; `raise_to` never lowers a severity, `set_to` replaces it."""

    name: str
    when: Condition
    set_to: Severity | None = None
    raise_to: Severity | None = None

    @model_validator(mode="after")
    def _one_effect(self) -> SeverityRule:
        if (self.set_to is None) == (self.raise_to is None):
            raise ValueError(f"severity rule {self.name!r} needs exactly one of set_to, raise_to")
        return self


class Guardrails(_Strict):
    min_confidence: float = Field(default=0.6, ge=0, le=1, description="below it a human approves")
    approval_severities: tuple[Severity, ...] = (Severity.CRITICAL,)
    escalate_types: tuple[str, ...] = Field(default=(), description="types that always go to a human, no playbook")
    non_actionable_types: tuple[str, ...] = Field(default=(), description="types recorded but not acted upon")
    pii_fields: tuple[str, ...] = Field(default=(), description="attribute names redacted at intake")
    max_auto_resolve_severity: Severity = Severity.HIGH


StepAction = Literal["notify", "assign_owner", "set_status", "add_comment", "call_tool"]


class PlaybookStep(_Strict):
    action: StepAction
    params: dict[str, Any] = Field(default_factory=dict)
    tool: str | None = Field(default=None, description="for call_tool: the tool id")
    input: dict[str, Any] = Field(
        default_factory=dict, description="for call_tool: values, `{attributes.x}` / `{exception_id}` templates allowed"
    )
    requires_approval: bool = Field(default=False, description="pause here until a human approves")

    @model_validator(mode="after")
    def _tool_for_call(self) -> PlaybookStep:
        if self.action == "call_tool" and not self.tool:
            raise ValueError("a call_tool step needs `tool`")
        if self.action != "call_tool" and self.tool:
            raise ValueError(f"only call_tool steps take `tool` (this step is {self.action})")
        if self.action == "set_status" and self.params.get("status") not in _SETTABLE_STATUSES:
            raise ValueError(f"set_status needs params.status in {sorted(_SETTABLE_STATUSES)}")
        return self


_SETTABLE_STATUSES = frozenset({"in_progress", "resolved", "escalated", "pending_external"})


class Playbook(_Strict):
    description: str
    steps: tuple[PlaybookStep, ...] = Field(min_length=1)


class ToolSpec(_Strict):
    description: str
    kind: Literal["builtin", "http"]
    builtin: str | None = Field(default=None, description="name in pipeline.tools.builtin.BUILTIN_TOOLS")
    url: str | None = None
    method: Literal["GET", "POST"] = "POST"
    timeout_s: float | None = Field(default=None, gt=0, le=300)
    input_schema: dict[str, Any] = Field(description="JSON Schema (draft 2020-12) of the tool's input")

    @model_validator(mode="after")
    def _target(self) -> ToolSpec:
        if self.kind == "builtin" and not self.builtin:
            raise ValueError("a builtin tool needs `builtin`")
        if self.kind == "http" and not self.url:
            raise ValueError("an http tool needs `url`")
        return self


class DomainPack(_Strict):
    pack: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    description: str
    exception_types: dict[str, ExceptionTypeSpec] = Field(min_length=1)
    fallback_type: str = Field(description="type given when nothing matches; must be defined")
    severity_rules: tuple[SeverityRule, ...] = ()
    sla_minutes: dict[Severity, int] = Field(description="SLA window per severity, minutes")
    guardrails: Guardrails = Guardrails()
    playbooks: dict[str, Playbook] = Field(default_factory=dict)
    tools: dict[str, ToolSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _references(self) -> DomainPack:
        problems: list[str] = []
        if self.fallback_type not in self.exception_types:
            problems.append(f"fallback_type {self.fallback_type!r} is not an exception type")
        missing_sla = [s.value for s in Severity if s not in self.sla_minutes]
        if missing_sla:
            problems.append(f"sla_minutes lacks {missing_sla}")
        for name, spec in self.exception_types.items():
            if spec.playbook and spec.playbook not in self.playbooks:
                problems.append(f"exception_types.{name}.playbook {spec.playbook!r} is not defined")
        for name, playbook in self.playbooks.items():
            for index, step in enumerate(playbook.steps):
                if step.tool and step.tool not in self.tools:
                    problems.append(f"playbooks.{name}.steps[{index}].tool {step.tool!r} is not defined")
        for rule in self.severity_rules:
            for type_name in rule.when.exception_types:
                if type_name not in self.exception_types:
                    problems.append(f"severity rule {rule.name!r} names unknown type {type_name!r}")
        for key in ("escalate_types", "non_actionable_types"):
            for type_name in getattr(self.guardrails, key):
                if type_name not in self.exception_types:
                    problems.append(f"guardrails.{key} names unknown type {type_name!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class ApprovalRule(_Strict):
    """A human approves before any non-safe step when the condition holds."""

    name: str
    when: Condition
    severities: tuple[Severity, ...] = Field(default=(), description="and the severity is one of these (if set)")


class RateLimit(_Strict):
    events_per_s: float = Field(gt=0)
    burst: int = Field(ge=1)


class TenantOverrides(_Strict):
    severity: dict[str, Severity] = Field(default_factory=dict, description="exception type -> default severity")
    sla_minutes: dict[Severity, int] = Field(default_factory=dict)
    min_confidence: float | None = Field(default=None, ge=0, le=1)
    playbooks: dict[str, str] = Field(default_factory=dict, description="exception type -> playbook id")


class TenantPack(_Strict):
    tenant_id: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    name: str
    domain: str = Field(description="the domain pack's `pack` name")
    domain_version: str | None = Field(default=None, description="pin a domain pack version; None takes the loaded one")
    status: Literal["active", "suspended"] = "active"
    overrides: TenantOverrides = TenantOverrides()
    approval_rules: tuple[ApprovalRule, ...] = ()
    enabled_tools: tuple[str, ...] = ()
    rate_limit: RateLimit | None = None
    tool_base_urls: dict[str, str] = Field(default_factory=dict, description="tool id -> URL, for http tools")
