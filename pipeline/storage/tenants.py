"""Mirror the loaded tenant packs into the `tenants` table (the packs are the source of truth)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from pipeline.packs import PackRegistry
from pipeline.storage import schema
from pipeline.storage.database import transaction


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
