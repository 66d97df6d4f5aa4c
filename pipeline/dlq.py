"""The dead-letter queue: inspect, replay and clear. One implementation for the CLI and the HTTP API.

Replay is an outbox: one transaction moves each entry from `dead_letter_queue` to `dlq_replays`
(who, when, the entry as it was) and forgets the event's failed attempt in `event_processing_log`,
so the event comes back with a fresh retry budget. Only then is the original record re-published to
its stage's topic, and the replay marked published. A crash in between leaves an unpublished replay
that the supervisor (or the next replay command) publishes. Replaying an entry a second time finds
nothing to do: it is no longer in the queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, delete, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from pipeline.records import OutboundRecord
from pipeline.routing import input_topic
from pipeline.settings import KafkaSettings
from pipeline.storage import schema
from pipeline.storage.database import transaction

REPLAYED_FROM_HEADER = "x-sentinai-replayed-from"
_DROPPED_HEADERS = frozenset({"x-sentinai-retry-attempt", REPLAYED_FROM_HEADER})
MAX_PAGE_SIZE = 500


@dataclass(frozen=True)
class DlqFilter:
    """Entries matching every field that is set. Replaying or clearing with no field set is refused
    by the callers, so a typo never empties the whole queue."""

    tenant_id: str | None = None
    worker_type: str | None = None
    error_type: str | None = None

    def is_empty(self) -> bool:
        return self.tenant_id is None and self.worker_type is None and self.error_type is None

    def apply(self, statement: Select[Any]) -> Select[Any]:
        table = schema.dead_letter_queue
        if self.tenant_id is not None:
            statement = statement.where(table.c.tenant_id == self.tenant_id)
        if self.worker_type is not None:
            statement = statement.where(table.c.worker_type == self.worker_type)
        if self.error_type is not None:
            statement = statement.where(table.c.error_type == self.error_type)
        return statement


@dataclass(frozen=True)
class Replay:
    replay_id: int
    dlq_id: int
    record: OutboundRecord


_SUMMARY_COLUMNS = [
    c for c in schema.dead_letter_queue.c if c.name not in ("original_key", "original_value", "original_headers", "payload")
]


class DeadLetterQueue:
    def __init__(self, engine: AsyncEngine, kafka: KafkaSettings) -> None:
        self.engine = engine
        self.kafka = kafka

    async def list(self, dlq_filter: DlqFilter, *, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """Newest first; `limit` is capped at MAX_PAGE_SIZE."""
        limit = max(1, min(limit, MAX_PAGE_SIZE))
        statement = dlq_filter.apply(select(*_SUMMARY_COLUMNS)).order_by(schema.dead_letter_queue.c.id.desc())
        async with transaction(self.engine) as connection:
            rows = await connection.execute(statement.limit(limit).offset(max(0, offset)))
            return [dict(row._mapping) for row in rows]

    async def show(self, dlq_id: int, *, tenant_id: str | None = None) -> dict[str, Any] | None:
        """One entry with its original event; None when absent (or another tenant's)."""
        table = schema.dead_letter_queue
        statement = select(table).where(table.c.id == dlq_id)
        if tenant_id is not None:
            statement = statement.where(table.c.tenant_id == tenant_id)
        async with transaction(self.engine) as connection:
            row = (await connection.execute(statement)).first()
        if row is None:
            return None
        entry = dict(row._mapping)
        value = entry.pop("original_value")
        key = entry.pop("original_key")
        entry["original_value_text"] = value.decode("utf-8", "replace") if value is not None else None
        entry["original_key_text"] = key.decode("utf-8", "replace") if key is not None else None
        return entry

    async def stats(self, *, tenant_id: str | None = None) -> dict[str, Any]:
        """The runbook's DLQ questions: size, by error type, by tenant, by stage."""
        table = schema.dead_letter_queue
        scope = DlqFilter(tenant_id=tenant_id)
        result: dict[str, Any] = {}
        async with transaction(self.engine) as connection:
            result["size"] = (await connection.execute(scope.apply(select(func.count()).select_from(table)))).scalar_one()
            for name, column in (("by_error_type", table.c.error_type), ("by_tenant", table.c.tenant_id),
                                 ("by_stage", table.c.worker_type)):
                statement = scope.apply(select(column, func.count().label("count")).group_by(column))
                rows = await connection.execute(statement.order_by(func.count().desc()))
                result[name] = {str(row[0]): row[1] for row in rows}
        return result

    async def replay(
        self, *, replayed_by: str, now: datetime, dlq_id: int | None = None, dlq_filter: DlqFilter | None = None,
        limit: int = 10_000,
    ) -> list[Replay]:
        """Take entries out of the queue for replay; returns the records to publish. Entries another
        replay holds right now are skipped (SKIP LOCKED), so concurrent replays never double up."""
        if (dlq_id is None) == (dlq_filter is None or dlq_filter.is_empty()):
            raise ValueError("replay one entry by id, or the entries matching a non-empty filter")
        table = schema.dead_letter_queue
        statement = select(table).order_by(table.c.id).limit(limit).with_for_update(skip_locked=True)
        statement = statement.where(table.c.id == dlq_id) if dlq_id is not None else dlq_filter.apply(statement)  # type: ignore[union-attr]
        async with transaction(self.engine) as connection:
            entries = [dict(row._mapping) for row in await connection.execute(statement)]
            if not entries:
                return []
            replay_rows = [self._replay_row(entry, replayed_by, now) for entry in entries]
            inserted = await connection.execute(
                insert(schema.dlq_replays).returning(schema.dlq_replays.c.id, schema.dlq_replays.c.dlq_id), replay_rows
            )
            replay_ids = {row.dlq_id: row.id for row in inserted}
            await connection.execute(delete(table).where(table.c.id.in_([entry["id"] for entry in entries])))
            log = schema.event_processing_log
            await connection.execute(
                delete(log).where(
                    tuple_(log.c.event_id, log.c.worker_type).in_([(e["event_id"], e["worker_type"]) for e in entries]),
                    log.c.status == "failed",
                )
            )
        return [Replay(replay_ids[row["dlq_id"]], row["dlq_id"], _record_of(row)) for row in replay_rows]

    async def unpublished_replays(self, limit: int = 1000) -> list[Replay]:
        replays = schema.dlq_replays
        statement = select(replays).where(replays.c.published_at.is_(None)).order_by(replays.c.id).limit(limit)
        async with transaction(self.engine) as connection:
            rows = [dict(row._mapping) for row in await connection.execute(statement)]
        return [Replay(row["id"], row["dlq_id"], _record_of(row)) for row in rows]

    async def mark_published(self, replay_ids: list[int], now: datetime) -> None:
        if not replay_ids:
            return
        replays = schema.dlq_replays
        async with transaction(self.engine) as connection:
            await connection.execute(
                update(replays).where(and_(replays.c.id.in_(replay_ids), replays.c.published_at.is_(None))).values(published_at=now)
            )

    async def clear(self, dlq_filter: DlqFilter) -> int:
        """Delete the matching entries (the runbook's "Clear DLQ for specific tenant"). Needs a tenant."""
        if dlq_filter.tenant_id is None:
            raise ValueError("clearing the DLQ needs a tenant_id")
        table = schema.dead_letter_queue
        statement = delete(table).where(table.c.tenant_id == dlq_filter.tenant_id)
        if dlq_filter.worker_type is not None:
            statement = statement.where(table.c.worker_type == dlq_filter.worker_type)
        if dlq_filter.error_type is not None:
            statement = statement.where(table.c.error_type == dlq_filter.error_type)
        async with transaction(self.engine) as connection:
            result = await connection.execute(statement)
        return int(result.rowcount or 0)

    def _replay_row(self, entry: dict[str, Any], replayed_by: str, now: datetime) -> dict[str, Any]:
        summary = {k: v for k, v in entry.items() if k not in ("original_key", "original_value", "original_headers")}
        summary["created_at"] = entry["created_at"].isoformat()
        headers = [[name, value] for name, value in entry["original_headers"] if name not in _DROPPED_HEADERS]
        headers.append([REPLAYED_FROM_HEADER, str(entry["id"])])
        return {
            "dlq_id": entry["id"],
            "event_id": entry["event_id"],
            "tenant_id": entry["tenant_id"],
            "worker_type": entry["worker_type"],
            "error_type": entry["error_type"],
            "target_topic": input_topic(self.kafka, entry["worker_type"]),
            "original_key": entry["original_key"],
            "original_value": entry["original_value"],
            "original_headers": headers,
            "entry": summary,
            "replayed_by": replayed_by,
            "replayed_at": now,
        }


def _record_of(row: dict[str, Any]) -> OutboundRecord:
    headers = tuple((str(name), str(value).encode()) for name, value in row["original_headers"])
    return OutboundRecord(row["target_topic"], row["original_key"], row["original_value"] or b"", headers)
