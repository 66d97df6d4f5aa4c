"""Per-tenant API keys for the operations API: created, listed, revoked, and checked on each request.

A key is `sk_` followed by 32 random bytes (url-safe base64). Only its SHA-256 is stored: a key has
256 bits of entropy, so nobody can guess one from the hash, and a salted slow hash would add nothing
but CPU per request. The key itself is shown once, when it is created; a lost key is revoked and a
new one created. `key_id` is the public name of a key (logs, `decided_by`, revocation).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from pipeline.errors import UnknownTenantError
from pipeline.storage import schema
from pipeline.storage.database import transaction

KEY_PREFIX = "sk_"
_MAX_KEY_CHARS = 256


@dataclass(frozen=True)
class ApiKey:
    """A valid key's identity: who is calling."""

    key_id: str
    tenant_id: str
    label: str | None


@dataclass(frozen=True)
class NewApiKey:
    """A key just created. `secret` is shown to the operator once and never stored."""

    key_id: str
    tenant_id: str
    label: str | None
    secret: str


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def generate_key() -> tuple[str, str]:
    """(key_id, secret): a fresh public id and a fresh 256-bit secret."""
    return f"key_{secrets.token_hex(8)}", KEY_PREFIX + secrets.token_urlsafe(32)


async def create_key(engine: AsyncEngine, tenant_id: str, *, label: str | None, now: datetime) -> NewApiKey:
    """A new key for a registered tenant. Raises UnknownTenantError when the tenant is not in `tenants`."""
    key_id, secret = generate_key()
    tenants = schema.tenants
    async with transaction(engine) as connection:
        exists = (await connection.execute(select(tenants.c.tenant_id).where(tenants.c.tenant_id == tenant_id))).first()
        if exists is None:
            raise UnknownTenantError(f"tenant {tenant_id!r} is not registered (sentinai tenant create)")
        await connection.execute(
            schema.api_keys.insert().values(key_id=key_id, tenant_id=tenant_id, key_hash=hash_key(secret), label=label,
                                            created_at=now)
        )
    return NewApiKey(key_id, tenant_id, label, secret)


async def authenticate(engine: AsyncEngine, secret: str) -> ApiKey | None:
    """The key's identity, or None when the key is unknown or revoked. Never raises on odd input."""
    if not secret.startswith(KEY_PREFIX) or len(secret) > _MAX_KEY_CHARS:
        return None
    keys = schema.api_keys
    statement = select(keys.c.key_id, keys.c.tenant_id, keys.c.label).where(
        keys.c.key_hash == hash_key(secret), keys.c.revoked_at.is_(None)
    )
    async with transaction(engine) as connection:
        row = (await connection.execute(statement)).first()
    return None if row is None else ApiKey(row.key_id, row.tenant_id, row.label)


async def revoke_key(engine: AsyncEngine, key_id: str, *, now: datetime) -> bool:
    """Revoke a key; False when no valid key has this id. Takes effect on the next request."""
    keys = schema.api_keys
    async with transaction(engine) as connection:
        result = await connection.execute(
            update(keys).where(keys.c.key_id == key_id, keys.c.revoked_at.is_(None)).values(revoked_at=now)
        )
    return bool(result.rowcount)


async def list_keys(engine: AsyncEngine, tenant_id: str | None = None) -> list[dict[str, object]]:
    """Every key (never the secret), oldest first."""
    keys = schema.api_keys
    statement = select(keys.c.key_id, keys.c.tenant_id, keys.c.label, keys.c.created_at, keys.c.revoked_at)
    if tenant_id is not None:
        statement = statement.where(keys.c.tenant_id == tenant_id)
    async with transaction(engine) as connection:
        rows = await connection.execute(statement.order_by(keys.c.created_at, keys.c.key_id))
        return [dict(row._mapping) for row in rows]


async def list_tenants(engine: AsyncEngine) -> list[dict[str, object]]:
    """Registered tenants with their count of valid keys."""
    tenants, keys = schema.tenants, schema.api_keys
    active_keys = (
        select(keys.c.tenant_id, func.count().label("keys"))
        .where(keys.c.revoked_at.is_(None))
        .group_by(keys.c.tenant_id)
        .subquery()
    )
    statement = (
        select(tenants.c.tenant_id, tenants.c.name, tenants.c.domain, tenants.c.status, tenants.c.created_at,
               tenants.c.pack["rate_limit"].label("rate_limit"), func.coalesce(active_keys.c["keys"], 0).label("active_keys"))
        .outerjoin(active_keys, active_keys.c.tenant_id == tenants.c.tenant_id)
        .order_by(tenants.c.tenant_id)
    )
    async with transaction(engine) as connection:
        return [dict(row._mapping) for row in await connection.execute(statement)]
