"""Domain packs and tenant packs (versioned YAML) and the resolved per-tenant view."""

from pipeline.packs.loader import BUNDLED_PACK_DIR, PackRegistry, TenantView, load_packs
from pipeline.packs.models import DomainPack, Severity, TenantPack

__all__ = ["BUNDLED_PACK_DIR", "DomainPack", "PackRegistry", "Severity", "TenantPack", "TenantView", "load_packs"]
