"""`sentinai tenant create|key|list|revoke-key|rate-limit`: tenants, their API keys for the
operations API, and their rate limits.

    sentinai tenant create TENANT_ID --name N --domain finance|healthcare [--enable-tool X ...] [--label L]
                                     [--rate-limit EVENTS_PER_S --burst N]
    sentinai tenant key TENANT_ID [--label L]
    sentinai tenant list
    sentinai tenant revoke-key KEY_ID
    sentinai tenant rate-limit TENANT_ID (--events-per-s R --burst N | --off)

`create` registers the tenant in the `tenants` table (every stage picks it up within seconds) and
prints its first API key; `key` prints another. `rate-limit` changes a tenant's limit in the table;
the intake consumers apply it within `SENTINAI_RATE_LIMITS__REFRESH_INTERVAL_S`. A key is printed once and never stored: only its
SHA-256 is kept. These commands talk to DATABASE_URL, else the embedded PostgreSQL of a running
`sentinai up`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from cluster.dlq_commands import resolve_database
from pipeline.events import utc_now
from pipeline.packs import TenantPack, load_packs
from pipeline.packs.models import RateLimit
from pipeline.settings import Settings
from pipeline.storage import api_keys, schema
from pipeline.storage.database import create_engine, transaction
from pipeline.storage.tenants import register_tenant

Action = Callable[[AsyncEngine, Settings, argparse.Namespace], Awaitable[int]]


def add_tenant_commands(commands: argparse._SubParsersAction, load_settings: Callable[[], Settings]) -> None:  # type: ignore[type-arg]
    tenant = commands.add_parser("tenant", help="tenants and their API keys")
    actions = tenant.add_subparsers(dest="tenant_command", required=True)

    def handler(action: Action) -> Callable[[argparse.Namespace], int]:
        return lambda args: run_tenant_command(load_settings(), action, args)

    create = actions.add_parser("create", help="register a tenant and print its first API key")
    create.add_argument("tenant_id")
    create.add_argument("--name", required=True, help="display name")
    create.add_argument("--domain", required=True, help="domain pack: finance, healthcare, or one from SENTINAI_PACK_DIR")
    create.add_argument("--enable-tool", dest="enabled_tools", action="append", default=[], metavar="TOOL",
                        help="a tool of the domain pack the tenant's playbooks may call (repeat)")
    create.add_argument("--label", default=None, help="label of the first key")
    create.add_argument("--rate-limit", type=float, default=None, metavar="EVENTS_PER_S",
                        help="exceptions a second the tenant may send; beyond it they are slowed at intake (default: no limit)")
    create.add_argument("--burst", type=int, default=None, help="exceptions the tenant may send at once (with --rate-limit)")
    create.set_defaults(handler=handler(_create))

    key = actions.add_parser("key", help="create another API key for a tenant and print it")
    key.add_argument("tenant_id")
    key.add_argument("--label", default=None)
    key.set_defaults(handler=handler(_key))

    listing = actions.add_parser("list", help="tenants and their keys (never the keys themselves)")
    listing.set_defaults(handler=handler(_list))

    revoke = actions.add_parser("revoke-key", help="revoke an API key by its id")
    revoke.add_argument("key_id")
    revoke.set_defaults(handler=handler(_revoke))

    limit = actions.add_parser("rate-limit", help="set or lift a tenant's rate limit")
    limit.add_argument("tenant_id")
    limit.add_argument("--events-per-s", type=float, default=None, help="exceptions a second")
    limit.add_argument("--burst", type=int, default=None, help="exceptions at once")
    limit.add_argument("--off", action="store_true", help="no limit")
    limit.set_defaults(handler=handler(_rate_limit))


async def _create(engine: AsyncEngine, settings: Settings, args: argparse.Namespace) -> int:
    packs = load_packs(settings.pack_dir)
    if args.domain not in packs.domains:
        print(f"sentinai: unknown domain {args.domain!r}; loaded: {', '.join(sorted(packs.domains))}", file=sys.stderr)
        return 2
    if (args.rate_limit is None) != (args.burst is None):
        print("sentinai: --rate-limit and --burst go together", file=sys.stderr)
        return 2
    try:
        rate_limit = None if args.rate_limit is None else RateLimit(events_per_s=args.rate_limit, burst=args.burst)
        tenant = TenantPack(tenant_id=args.tenant_id, name=args.name, domain=args.domain,
                            enabled_tools=tuple(args.enabled_tools), rate_limit=rate_limit)
    except PydanticValidationError as error:
        return _invalid("tenant", error)
    tenants = schema.tenants
    async with transaction(engine) as connection:
        exists = (await connection.execute(select(tenants.c.tenant_id).where(tenants.c.tenant_id == tenant.tenant_id))).first()
    if exists is not None:
        print(f"sentinai: tenant {tenant.tenant_id} exists already; `sentinai tenant key {tenant.tenant_id}` "
              "creates another key", file=sys.stderr)
        return 1
    await register_tenant(engine, packs, tenant, utc_now())
    new_key = await api_keys.create_key(engine, tenant.tenant_id, label=args.label, now=utc_now())
    print(f"created tenant {tenant.tenant_id} ({tenant.name}, {tenant.domain})")
    _print_key(new_key)
    return 0


async def _key(engine: AsyncEngine, settings: Settings, args: argparse.Namespace) -> int:
    _print_key(await api_keys.create_key(engine, args.tenant_id, label=args.label, now=utc_now()))
    return 0


async def _list(engine: AsyncEngine, settings: Settings, args: argparse.Namespace) -> int:
    keys_by_tenant: dict[Any, list[dict[str, Any]]] = {}
    for key in await api_keys.list_keys(engine):
        keys_by_tenant.setdefault(key["tenant_id"], []).append(key)
    for tenant in await api_keys.list_tenants(engine):
        limit: Any = tenant["rate_limit"]
        shown = f"rate limit {limit['events_per_s']:g}/s burst {limit['burst']}" if limit else "no rate limit"
        print(f"{tenant['tenant_id']:<20} {tenant['status']:<9} {tenant['domain']:<11} {tenant['name']}  "
              f"(active keys: {tenant['active_keys']}; {shown})")
        for key in keys_by_tenant.get(tenant["tenant_id"], []):
            state = f"revoked {key['revoked_at']:%Y-%m-%d %H:%M}" if key["revoked_at"] else "active"
            print(f"    {key['key_id']}  {state:<24} created {key['created_at']:%Y-%m-%d %H:%M}  {key['label'] or ''}")
    return 0


async def _revoke(engine: AsyncEngine, settings: Settings, args: argparse.Namespace) -> int:
    if not await api_keys.revoke_key(engine, args.key_id, now=utc_now()):
        print(f"sentinai: no active key {args.key_id}", file=sys.stderr)
        return 1
    print(f"revoked {args.key_id}")
    return 0


async def _rate_limit(engine: AsyncEngine, settings: Settings, args: argparse.Namespace) -> int:
    given = (args.events_per_s is not None, args.burst is not None)
    if given != ((False, False) if args.off else (True, True)):
        print("sentinai: give --events-per-s and --burst, or --off", file=sys.stderr)
        return 2
    try:
        rate_limit = None if args.off else RateLimit(events_per_s=args.events_per_s, burst=args.burst)
    except PydanticValidationError as error:
        return _invalid("rate limit", error)
    tenants = schema.tenants
    async with transaction(engine) as connection:
        row = (await connection.execute(select(tenants.c.pack).where(tenants.c.tenant_id == args.tenant_id))).first()
    if row is None:
        print(f"sentinai: no tenant {args.tenant_id}", file=sys.stderr)
        return 1
    tenant = TenantPack.model_validate({**row.pack, "rate_limit": rate_limit})
    await register_tenant(engine, load_packs(settings.pack_dir), tenant, utc_now())
    shown = "none" if rate_limit is None else f"{rate_limit.events_per_s:g}/s, burst {rate_limit.burst}"
    print(f"tenant {tenant.tenant_id}: rate limit {shown}")
    if tenant.tenant_id in load_packs(settings.pack_dir).tenants:
        print(f"note: {tenant.tenant_id} has a tenant pack; `sentinai up` restores the pack's limit when it starts: "
              "change the YAML too", file=sys.stderr)
    return 0


def _invalid(what: str, error: PydanticValidationError) -> int:
    """Exit status 2, saying which field was wrong and why."""
    print(f"sentinai: invalid {what}: {error.errors()[0]['loc'][0]}: {error.errors()[0]['msg']}", file=sys.stderr)
    return 2


def _print_key(new_key: api_keys.NewApiKey) -> None:
    print(f"key_id: {new_key.key_id}")
    print(f"api_key: {new_key.secret}")
    print("store the key now: it is not shown again (send it as `Authorization: Bearer <key>`)", file=sys.stderr)


def run_tenant_command(settings: Settings, action: Action, args: argparse.Namespace) -> int:
    settings = resolve_database(settings)
    assert settings.database.url is not None

    async def run() -> int:
        engine = create_engine(settings.database.url.get_secret_value(), settings.database)  # type: ignore[union-attr]
        try:
            return int(await action(engine, settings, args))
        finally:
            await engine.dispose()

    return asyncio.run(run())
