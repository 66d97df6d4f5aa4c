"""Load and cross-check domain and tenant packs; resolve one tenant's effective view.

Bundled packs live in `pipeline/packs/data/` (domain packs) and `pipeline/packs/data/tenants/`.
An operator's `SENTINAI_PACK_DIR` may add packs with the same layout; a pack there replaces a bundled
one of the same name. Errors name the file and the key (`PackError`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import ValidationError

from pipeline.errors import PackError, TenantSuspendedError, UnknownTenantError
from pipeline.packs.models import (
    ApprovalRule,
    DomainPack,
    ExceptionTypeSpec,
    Playbook,
    Severity,
    TenantPack,
    ToolSpec,
)

BUNDLED_PACK_DIR = Path(__file__).parent / "data"

_PackT = TypeVar("_PackT", DomainPack, TenantPack)


@dataclass(frozen=True)
class TenantView:
    """One tenant's effective configuration: its domain pack with its overrides applied."""

    tenant: TenantPack
    domain: DomainPack

    @property
    def tenant_id(self) -> str:
        return self.tenant.tenant_id

    def exception_type(self, name: str) -> ExceptionTypeSpec | None:
        return self.domain.exception_types.get(name)

    def default_severity(self, type_name: str) -> Severity:
        override = self.tenant.overrides.severity.get(type_name)
        if override is not None:
            return override
        spec = self.domain.exception_types.get(type_name) or self.domain.exception_types[self.domain.fallback_type]
        return spec.default_severity

    def sla_minutes(self, severity: Severity) -> int:
        return self.tenant.overrides.sla_minutes.get(severity, self.domain.sla_minutes[severity])

    @property
    def min_confidence(self) -> float:
        override = self.tenant.overrides.min_confidence
        return override if override is not None else self.domain.guardrails.min_confidence

    def playbook_id_for(self, type_name: str) -> str | None:
        override = self.tenant.overrides.playbooks.get(type_name)
        if override is not None:
            return override
        spec = self.domain.exception_types.get(type_name)
        return spec.playbook if spec else None

    def playbook(self, playbook_id: str) -> Playbook | None:
        return self.domain.playbooks.get(playbook_id)

    def tool(self, tool_id: str) -> ToolSpec | None:
        return self.domain.tools.get(tool_id)

    def tool_enabled(self, tool_id: str) -> bool:
        return tool_id in self.tenant.enabled_tools

    @property
    def approval_rules(self) -> tuple[ApprovalRule, ...]:
        return self.tenant.approval_rules

    def ensure_active(self) -> None:
        if self.tenant.status != "active":
            raise TenantSuspendedError(f"tenant {self.tenant_id} is {self.tenant.status}")


@dataclass
class PackRegistry:
    """Every loaded pack, by name. Immutable after `load_packs` returns."""

    domains: dict[str, DomainPack] = field(default_factory=dict)
    tenants: dict[str, TenantPack] = field(default_factory=dict)
    # Views handed out before, while their tenant and domain packs are still the registry's: a stage
    # asks for a tenant's view a dozen times per exception.
    _views: dict[str, TenantView] = field(default_factory=dict, init=False, repr=False, compare=False)

    def view(self, tenant_id: str) -> TenantView:
        """The tenant's view. Raises UnknownTenantError / TenantSuspendedError (validation errors)."""
        tenant = self.tenants.get(tenant_id)
        if tenant is None:
            raise UnknownTenantError(f"tenant {tenant_id!r} is not registered")
        domain = self.domains[tenant.domain]
        view = self._views.get(tenant_id)
        if view is None or view.tenant is not tenant or view.domain is not domain:
            view = self._views[tenant_id] = TenantView(tenant=tenant, domain=domain)
        view.ensure_active()
        return view

    def with_tenant(self, tenant: TenantPack) -> PackRegistry:
        """A copy with one tenant added or replaced (tenants registered at run time)."""
        check_tenant(tenant, self.domains, source=f"tenant {tenant.tenant_id}")
        return PackRegistry(domains=self.domains, tenants={**self.tenants, tenant.tenant_id: tenant})


def load_packs(extra_dir: Path | None = None) -> PackRegistry:
    """Load the bundled packs, then those in `extra_dir` (same layout), and cross-check them."""
    registry = PackRegistry()
    for directory in (BUNDLED_PACK_DIR, extra_dir):
        if directory is None:
            continue
        if not directory.is_dir():
            raise PackError(f"SENTINAI_PACK_DIR {directory} is not a directory")
        for path in sorted(directory.glob("*.yaml")):
            pack = _parse(path, DomainPack)
            registry.domains[pack.pack] = pack
        for path in sorted((directory / "tenants").glob("*.yaml")):
            tenant = _parse(path, TenantPack)
            registry.tenants[tenant.tenant_id] = tenant
    for tenant_id, tenant in registry.tenants.items():
        check_tenant(tenant, registry.domains, source=f"tenant pack {tenant_id}")
    return registry


def _parse(path: Path, model: type[_PackT]) -> _PackT:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PackError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or '(root)'}: {error['msg']}" for error in exc.errors()[:5]
        )
        raise PackError(f"{path}: {details}") from exc


def check_tenant(tenant: TenantPack, domains: dict[str, DomainPack], *, source: str) -> None:
    domain = domains.get(tenant.domain)
    if domain is None:
        raise PackError(f"{source}: domain {tenant.domain!r} is not loaded (have {sorted(domains)})")
    if tenant.domain_version and tenant.domain_version != domain.version:
        raise PackError(f"{source}: pins {tenant.domain} {tenant.domain_version}, loaded {domain.version}")
    problems = [f"enabled_tools: {t!r} is not a {domain.pack} tool" for t in tenant.enabled_tools if t not in domain.tools]
    problems += [
        f"overrides.severity: {t!r} is not a {domain.pack} type"
        for t in tenant.overrides.severity
        if t not in domain.exception_types
    ]
    for type_name, playbook_id in tenant.overrides.playbooks.items():
        if type_name not in domain.exception_types:
            problems.append(f"overrides.playbooks: {type_name!r} is not a {domain.pack} type")
        if playbook_id not in domain.playbooks:
            problems.append(f"overrides.playbooks.{type_name}: {playbook_id!r} is not a {domain.pack} playbook")
    for rule in tenant.approval_rules:
        problems += [
            f"approval_rules.{rule.name}: {t!r} is not a {domain.pack} type"
            for t in rule.when.exception_types
            if t not in domain.exception_types
        ]
    if problems:
        raise PackError(f"{source}: " + "; ".join(problems))
