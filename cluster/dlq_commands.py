"""`sentinai dlq list|show|stats|replay|clear`: the dead-letter queue from the command line.

The logic is `pipeline.dlq.DeadLetterQueue`, shared with the HTTP API. These commands talk to
DATABASE_URL (else the embedded PostgreSQL of a running `sentinai up`) and, to replay, to
KAFKA_BOOTSTRAP_SERVERS (else the bundled broker of a running `sentinai up`).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from cluster.embedded import EmbeddedPostgres
from pipeline.dlq import DeadLetterQueue, DlqFilter
from pipeline.errors import ConfigurationError
from pipeline.events import utc_now
from pipeline.kafka import make_producer
from pipeline.settings import Settings
from pipeline.storage.database import create_engine


def add_dlq_commands(commands: argparse._SubParsersAction, handler_for: Any) -> None:  # type: ignore[type-arg]
    dlq = commands.add_parser("dlq", help="inspect, replay and clear the dead-letter queue")
    actions = dlq.add_subparsers(dest="dlq_command", required=True)

    def with_filter(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--tenant", dest="tenant_id")
        parser.add_argument("--stage", dest="worker_type", help="intake, triage, policy, playbook, tool, feedback")
        parser.add_argument("--error-type", dest="error_type", help="e.g. validation_error, tool_unavailable")

    listing = actions.add_parser("list", help="entries, newest first")
    with_filter(listing)
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--offset", type=int, default=0)
    listing.set_defaults(handler=handler_for(_list))

    show = actions.add_parser("show", help="one entry with its original event")
    show.add_argument("dlq_id", type=int)
    show.set_defaults(handler=handler_for(_show))

    stats = actions.add_parser("stats", help="size, by error type, by tenant, by stage")
    stats.add_argument("--tenant", dest="tenant_id")
    stats.set_defaults(handler=handler_for(_stats))

    replay = actions.add_parser("replay", help="re-publish entries to their stage with a fresh retry budget")
    replay.add_argument("dlq_id", type=int, nargs="?", help="one entry; or use the filters for many")
    with_filter(replay)
    replay.add_argument("--by", dest="replayed_by", default=None, help="who replays (default: the OS user)")
    replay.set_defaults(handler=handler_for(_replay))

    clear = actions.add_parser("clear", help="delete one tenant's entries (investigate first!)")
    with_filter(clear)
    clear.add_argument("--yes", action="store_true", help="really delete")
    clear.set_defaults(handler=handler_for(_clear))


def resolve_database(settings: Settings) -> Settings:
    """DATABASE_URL, else the embedded PostgreSQL that `sentinai up` runs in the data directory."""
    if settings.database.url is not None:
        return settings
    embedded = EmbeddedPostgres(Path(settings.data_dir).resolve() / "postgres")
    if not embedded.is_running():
        raise ConfigurationError(
            f"no DATABASE_URL and no embedded PostgreSQL running in {embedded.data_dir}: start `sentinai up` or set DATABASE_URL"
        )
    return settings.model_copy(update={"database": settings.database.model_copy(update={"url": SecretStr(embedded.url())})})


def _filter(args: argparse.Namespace) -> DlqFilter:
    return DlqFilter(getattr(args, "tenant_id", None), getattr(args, "worker_type", None), getattr(args, "error_type", None))


async def _list(dlq: DeadLetterQueue, settings: Settings, args: argparse.Namespace) -> int:
    for entry in await dlq.list(_filter(args), limit=args.limit, offset=args.offset):
        print(f"{entry['id']:>8}  {entry['created_at']:%Y-%m-%d %H:%M:%S}  {entry['tenant_id'] or '-':<14} "
              f"{entry['worker_type']:<9} {entry['error_type']:<20} retries={entry['retry_count']} "
              f"event_id={entry['event_id']}  {entry['error_message'][:80]}")
    return 0


async def _show(dlq: DeadLetterQueue, settings: Settings, args: argparse.Namespace) -> int:
    entry = await dlq.show(args.dlq_id)
    if entry is None:
        print(f"sentinai: no DLQ entry {args.dlq_id}", file=sys.stderr)
        return 1
    print(json.dumps(entry, indent=2, default=str))
    return 0


async def _stats(dlq: DeadLetterQueue, settings: Settings, args: argparse.Namespace) -> int:
    print(json.dumps(await dlq.stats(tenant_id=args.tenant_id), indent=2))
    return 0


async def _replay(dlq: DeadLetterQueue, settings: Settings, args: argparse.Namespace) -> int:
    dlq_filter = _filter(args)
    if (args.dlq_id is None) == dlq_filter.is_empty():
        print("sentinai: give one DLQ id, or at least one of --tenant / --stage / --error-type", file=sys.stderr)
        return 2
    replayed_by = args.replayed_by or f"cli:{getpass.getuser()}"
    if args.dlq_id is not None:
        replays = await dlq.replay(replayed_by=replayed_by, now=utc_now(), dlq_id=args.dlq_id)
    else:
        replays = await dlq.replay(replayed_by=replayed_by, now=utc_now(), dlq_filter=dlq_filter)
    # Publish these and any replay an earlier crash left unpublished.
    pending = await dlq.unpublished_replays()
    await _publish(settings, pending)
    await dlq.mark_published([replay.replay_id for replay in pending], utc_now())
    print(f"replayed {len(replays)} entr{'y' if len(replays) == 1 else 'ies'}" +
          (f": {', '.join(str(r.dlq_id) for r in replays[:20])}" if replays else " (nothing matched: already replayed?)"))
    return 0


async def _clear(dlq: DeadLetterQueue, settings: Settings, args: argparse.Namespace) -> int:
    if args.tenant_id is None:
        print("sentinai: clear needs --tenant (the runbook's TRUNCATE is deliberately not a command)", file=sys.stderr)
        return 2
    if not args.yes:
        size = (await dlq.stats(tenant_id=args.tenant_id))["size"]
        print(f"would delete up to {size} entr{'y' if size == 1 else 'ies'} of tenant {args.tenant_id}; add --yes", file=sys.stderr)
        return 2
    print(f"deleted {await dlq.clear(_filter(args))} entries of tenant {args.tenant_id}")
    return 0


async def _publish(settings: Settings, replays: list[Any]) -> None:
    if not replays:
        return
    assert settings.kafka.bootstrap_servers
    producer = make_producer(settings.kafka, settings.kafka.bootstrap_servers, "sentinai-dlq-replay")
    await producer.start()
    try:
        deliveries = [
            await producer.send(r.record.topic, r.record.value, key=r.record.key, headers=list(r.record.headers))
            for r in replays
        ]
        await asyncio.gather(*deliveries)
    finally:
        await producer.stop()


def run_dlq_command(settings: Settings, action: Any, args: argparse.Namespace) -> int:
    settings = resolve_database(settings)
    assert settings.database.url is not None

    async def run() -> int:
        engine = create_engine(settings.database.url.get_secret_value(), settings.database)  # type: ignore[union-attr]
        try:
            return int(await action(DeadLetterQueue(engine, settings.kafka), settings, args))
        finally:
            await engine.dispose()

    return asyncio.run(run())
