"""Tenants in the `tenants` table: the YAML tenant packs are mirrored there at start-up, tenants
created at run time live only there, and every stage refreshes its view from it."""

from __future__ import annotations

import logging
from datetime import datetime

from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from pipeline.errors import PackError
from pipeline.packs import PackRegistry, TenantPack
from pipeline.packs.loader import check_tenant
from pipeline.storage import schema
from pipeline.storage.database import transaction

log = logging.getLogger(__name__)


async def sync_tenants(engine: AsyncEngine, packs: PackRegistry, now: datetime) -> int:
    rows = [
        {
            "tenant_id": tenant.tenant_id,
            "name": tenant.name,
            "domain": tenant.domain,
            "domain_version": packs.domains[tenant.domain].version,
            "status": tenant.status,
            "pack": tenant.model_dump(mode="json"),
            "updated_at": now,
        }
        for tenant in packs.tenants.values()
    ]
    if not rows:
        return 0
    statement = insert(schema.tenants)
    statement = statement.on_conflict_do_update(
        index_elements=["tenant_id"],
        set_={column: statement.excluded[column] for column in rows[0] if column != "tenant_id"},
    )
    async with transaction(engine) as connection:
        await connection.execute(statement, rows)
    return len(rows)


async def refresh_tenants(engine: AsyncEngine, packs: PackRegistry) -> int:
    """Bring `packs.tenants` up to date with the `tenants` table (tenants created at run time with
    `sentinai tenant create`, suspensions). Updates the registry in place; returns the tenant count.
    A row that no longer validates against the loaded domain packs is skipped with a warning."""
    async with transaction(engine) as connection:
        rows = (await connection.execute(select(schema.tenants.c.tenant_id, schema.tenants.c.pack, schema.tenants.c.status))).all()
    for row in rows:
        try:
            tenant = TenantPack.model_validate({**row.pack, "status": row.status})
            check_tenant(tenant, packs.domains, source=f"tenants row {row.tenant_id}")
        except (PydanticValidationError, PackError) as error:
            log.warning("tenant %s in the database is not usable: %s", row.tenant_id, error)
            continue
        packs.tenants[tenant.tenant_id] = tenant
    return len(packs.tenants)


async def register_tenant(engine: AsyncEngine, packs: PackRegistry, tenant: TenantPack, now: datetime) -> None:
    """Create or replace a tenant at run time. Raises PackError when it does not fit its domain pack."""
    check_tenant(tenant, packs.domains, source=f"tenant {tenant.tenant_id}")
    registry = PackRegistry(domains=packs.domains, tenants={tenant.tenant_id: tenant})
    await sync_tenants(engine, registry, now)
