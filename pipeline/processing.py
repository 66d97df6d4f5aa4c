"""Process one batch of records for one stage with exactly-once effects (DESIGN.md §3).

1. Decode and validate every record; a bad one is dead-lettered, the rest go on.
2. Look up `(event_id, worker_type)` in `event_processing_log`: an event already completed is not
   processed again; its recorded outputs are re-published instead (a crash between commit and
   produce loses nothing).
3. `Stage.prepare` (slow I/O), `load`, `handle` each new event in order, then one statement with
   every write: the stage's rows, outputs in `event_log`, the outcome of every event in
   `event_processing_log`, bad events in `dead_letter_queue` and the batch's metrics. That statement
   is the batch's one transaction: it runs in autocommit mode, without BEGIN and COMMIT round trips
   (two of five per batch). The reads before it need no transaction: under READ COMMITTED each
   statement of a transaction takes its own snapshot anyway, and none of them locks rows. If another
   worker recorded one of the batch's events meanwhile, the statement fails as a whole
   (`WriteBatch.execute(require_returned=...)`) and the batch is retried (it then sees them as done).
4. Return the output records; the caller produces them and only then commits offsets.

A transient error that concerns the whole batch (database down) propagates: the caller retries the
batch. A transient error of one event (tool 5xx) is recorded as `retrying` with its due time, and
the supervisor re-publishes it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pydantic_core
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pipeline.dead_letters import Rejected, dead_letter_record, dead_letter_row, record_context
from pipeline.errors import (
    ConfigurationError,
    DatabaseUnavailableError,
    InternalError,
    PayloadTooLargeError,
    SentinaiError,
    UnexpectedEventError,
    ValidationError,
)
from pipeline.events import EventEnvelope, EventType, decode_event, utc_now
from pipeline.metrics import BatchMetrics
from pipeline.packs import PackRegistry
from pipeline.records import BatchResult, EventStat, InboundRecord, OutboundRecord
from pipeline.redelivery import Known, attempt_number, split_due
from pipeline.retry import RetryPolicy
from pipeline.routing import DLQ_TOPIC, topics_for
from pipeline.settings import Settings
from pipeline.stages.base import BatchState, Emission, Stage
from pipeline.storage import bulk, schema
from pipeline.storage.database import autocommit, classify_database_error, sqlstate_of
from pipeline.storage.event_store import envelope_from_row, event_log_row
from pipeline.storage.tenants import refresh_tenants

log = logging.getLogger(__name__)
events_log = logging.getLogger("sentinai.events")

_TENANT_REFRESH_INTERVAL_S = 10.0
_TENANT_FORCED_REFRESH_MIN_S = 0.25

# Events that enter the pipeline from outside (sources, the API): no stage has logged them yet.
_EXTERNAL_EVENT_TYPES = frozenset({EventType.EXCEPTION_INGESTED, EventType.APPROVAL_DECIDED})

# An event's processing record may be overwritten only while it is waiting for a retry.
_STILL_RETRYING = "event_processing_log.status = 'retrying'"


class ConcurrentProcessingError(DatabaseUnavailableError):
    """Another worker recorded an event of this batch first (e.g. during a rebalance). Retry the batch."""

    error_type = "concurrent_processing"


class BatchProcessor:
    """Runs one stage over batches of Kafka records. Owns no Kafka client: returns records to produce."""

    def __init__(
        self,
        stage: Stage,
        engine: AsyncEngine,
        settings: Settings,
        packs: PackRegistry,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.stage = stage
        self.engine = engine
        self.settings = settings
        self.packs = packs
        self.clock = clock
        self.worker_type = stage.name
        self._tenants_refreshed_at = -math.inf
        self._topics = {event_type: tuple(topics_for(settings.kafka, event_type)) for event_type in EventType}

    async def process(self, records: Sequence[InboundRecord]) -> BatchResult:
        """Process a batch. Raises a retryable SentinaiError (or ConfigurationError) when the batch
        as a whole must be retried; a batch that fails permanently (a bug, a constraint violation) is
        split to find the event responsible, which is dead-lettered so the partition keeps flowing."""
        try:
            return await self._process_batch(records)
        except SentinaiError as error:
            if error.retryable or isinstance(error, ConfigurationError):
                raise
            return await self._isolate(records, error)
        except Exception as error:  # a bug outside any one event's handler
            log.exception("stage %s: unexpected error processing a batch of %d", self.worker_type, len(records))
            return await self._isolate(records, InternalError(f"{type(error).__name__}: {error}"))

    async def _isolate(self, records: Sequence[InboundRecord], error: SentinaiError) -> BatchResult:
        if len(records) == 1:
            return await self._dead_letter_alone(records[0], error)
        log.warning("stage %s: batch of %d failed permanently (%s: %s); processing its events one by one",
                    self.worker_type, len(records), error.error_type, error)
        merged = BatchResult()
        for record in records:
            result = await self.process([record])
            merged.outputs.extend(result.outputs)
            merged.stats.extend(result.stats)
        return merged

    async def _dead_letter_alone(self, record: InboundRecord, error: SentinaiError) -> BatchResult:
        try:
            event: EventEnvelope | None = decode_event(record.value)
        except ValidationError:
            event = None
        rejected = Rejected(record, event, error)
        if event is not None:
            log.warning("dead-lettering %s topic=%s partition=%s offset=%s: %s: %s", event.log_context(),
                        record.topic, record.partition, record.offset, error.error_type, error)
        now = self.clock()
        writes = bulk.WriteBatch()
        self._record_dead_letters(writes, [rejected], now)
        stat = EventStat(event.event_type if event else "unknown", event.tenant_id if event else "unknown",
                         "dead_lettered", 0.0, error.error_type)
        self._metrics([stat]).flush(writes)
        async with autocommit(self.engine) as connection:  # one statement: its own transaction
            await writes.execute(connection)
        return BatchResult(outputs=self._dead_letter_records([rejected]), stats=[stat])

    async def _process_batch(self, records: Sequence[InboundRecord]) -> BatchResult:
        started = time.perf_counter()
        await self._refresh_tenants_if_stale()
        events, rejected = self._decode(records)
        if any(item.error.error_type == "unknown_tenant" for item in rejected) and await self._refresh_tenants(force=True):
            events, rejected = self._decode(records)  # a tenant created since the last refresh
        event_ids = [event.event_id for event, _ in events]
        state = BatchState(now=self.clock())
        if self.stage.slow_prepare:
            # Slow I/O must not hold a database connection: find what is already done first, so
            # nothing is prepared (a tool run) twice.
            async with autocommit(self.engine) as connection:
                known = await self._load_known(connection, event_ids)
            fresh, replays = split_due(events, known)
            await self.stage.prepare([event for event, _ in fresh], state)
        try:
            async with autocommit(self.engine) as connection:
                if not self.stage.slow_prepare:
                    known = await self._load_known(connection, event_ids)
                    fresh, replays = split_due(events, known)
                    await self.stage.prepare([event for event, _ in fresh], state)
                writes = bulk.WriteBatch()
                outcome = await self._apply(connection, writes, fresh, rejected, known, state)
                replayed = await self._recorded_outputs(connection, [known[e.event_id] for e in replays])
                # Latency runs to now, the end of the batch's processing: its write (the commit) follows.
                stats = self._stats(outcome, replays, self.clock(), elapsed_s=time.perf_counter() - started, count=len(records))
                metrics = self._metrics(stats)
                for event, record in fresh:
                    if record.held_ms:
                        metrics.rate_limited(self.worker_type, event.event_type.value, event.tenant_id)
                metrics.flush(writes)
                await self._record_processing(connection, writes, outcome.processing_rows)
        except SentinaiError:
            raise
        except Exception as error:  # a driver error raised outside `autocommit`'s own wrapping
            raise classify_database_error(error) from error
        if self.settings.log_events:
            for event in outcome.completed:
                events_log.info("%s event_type=%s worker_type=%s status=completed", event.log_context(),
                                event.event_type.value, self.worker_type)
        result = BatchResult(stats=stats)
        result.outputs.extend(self._outbound(outcome.outputs + replayed, outcome.values))
        result.outputs.extend(self._dead_letter_records(outcome.dead_lettered))
        return result

    def _stats(
        self, outcome: _Outcome, replays: list[EventEnvelope], processed_at: datetime, *, elapsed_s: float, count: int
    ) -> list[EventStat]:
        per_event = elapsed_s / max(1, count)
        stats = [
            EventStat(e.event_type, e.tenant_id, "completed", per_event, latency_s=(processed_at - e.timestamp).total_seconds())
            for e in outcome.completed
        ]
        stats += [EventStat(e.event_type, e.tenant_id, "duplicate", per_event) for e in replays]
        for item, status in [(r, "dead_lettered") for r in outcome.dead_lettered] + [(r, "retrying") for r in outcome.retrying]:
            event_type = item.event.event_type.value if item.event else "unknown"
            tenant_id = item.event.tenant_id if item.event else "unknown"
            stats.append(EventStat(event_type, tenant_id, status, per_event, item.error.error_type))
        return stats

    def _metrics(self, stats: list[EventStat]) -> BatchMetrics:
        metrics = BatchMetrics()
        for stat in stats:
            metrics.event(self.worker_type, str(stat.event_type), stat.tenant_id, stat.status,
                          error_type=stat.error_type, latency_s=stat.latency_s)
        return metrics

    async def tenant_rate_limits(self) -> dict[str, tuple[float, int]]:
        """Each active tenant's `rate_limit` as (events per second, burst), read from the tenants
        table now (the intake consumers ask every few seconds)."""
        await self._refresh_tenants(force=True)
        return {
            tenant.tenant_id: (tenant.rate_limit.events_per_s, tenant.rate_limit.burst)
            for tenant in self.packs.tenants.values()
            if tenant.rate_limit is not None and tenant.status == "active"
        }

    async def _refresh_tenants_if_stale(self) -> None:
        if time.monotonic() - self._tenants_refreshed_at >= _TENANT_REFRESH_INTERVAL_S:
            await self._refresh_tenants()

    async def _refresh_tenants(self, *, force: bool = False) -> bool:
        """Reload tenants from the database (forced: at most four times a second, the table is small)."""
        since = time.monotonic() - self._tenants_refreshed_at
        if force and since < _TENANT_FORCED_REFRESH_MIN_S:
            return False
        self._tenants_refreshed_at = time.monotonic()
        await refresh_tenants(self.engine, self.packs)
        return True

    def _retry_policy(self, error: SentinaiError) -> RetryPolicy:
        return RetryPolicy.from_settings(self.settings.retry.policy_for(self.worker_type, error.error_type))

    # --- decoding -------------------------------------------------------------------------------

    def _decode(self, records: Sequence[InboundRecord]) -> tuple[list[tuple[EventEnvelope, InboundRecord]], list[Rejected]]:
        events: list[tuple[EventEnvelope, InboundRecord]] = []
        rejected: list[Rejected] = []
        seen: dict[str, int] = {}  # event id -> its index in `events`
        for record in records:
            event: EventEnvelope | None = None
            try:
                if record.value is not None and len(record.value) > self.settings.max_event_bytes:
                    raise PayloadTooLargeError(
                        f"event is {len(record.value)} bytes, over SENTINAI_MAX_EVENT_BYTES={self.settings.max_event_bytes}"
                    )
                event = decode_event(record.value)
                if event.event_type not in self.stage.accepts:
                    raise UnexpectedEventError(f"stage {self.worker_type} does not handle {event.event_type}")
                self.packs.view(event.tenant_id)
            except ValidationError as error:
                context = event.log_context() if event else record_context(record)
                log.warning("dead-lettering %s topic=%s partition=%s offset=%s: %s: %s", context, record.topic,
                            record.partition, record.offset, error.error_type, error)
                rejected.append(Rejected(record, event, error))
                continue
            if event.event_id in seen:
                # The same event twice in one batch: one copy stands for both, the latest retry
                # attempt if there is one. A redelivery of a failed original (offsets not yet
                # committed when a consumer died) can share a batch with the attempt the supervisor
                # re-published, and only the attempt is due: keeping the original lost the retry
                # until its re-dispatch.
                index = seen[event.event_id]
                if attempt_number(record) > attempt_number(events[index][1]):
                    events[index] = (event, record)
                continue
            seen[event.event_id] = len(events)
            events.append((event, record))
        return events, rejected

    async def _load_known(self, connection: AsyncConnection, event_ids: list[str]) -> dict[str, Known]:
        rows = await bulk.select_by_keys(
            connection, schema.event_processing_log, ("worker_type", "event_id"),
            ((self.worker_type, event_id) for event_id in event_ids),
            columns=("event_id", "status", "retry_count", "output_event_ids"),
        )
        return {row.event_id: Known(row.status, row.retry_count, list(row.output_event_ids)) for row in rows}

    # --- the batch ------------------------------------------------------------------------------

    async def _apply(
        self,
        connection: AsyncConnection,
        writes: bulk.WriteBatch,
        fresh: list[tuple[EventEnvelope, InboundRecord]],
        rejected: list[Rejected],
        known: dict[str, Known],
        state: BatchState,
    ) -> _Outcome:
        """Load, handle every fresh event, and queue the batch's writes (but the processing log's)."""
        outcome = _Outcome(dead_lettered=list(rejected))
        await self.stage.load(connection, [event for event, _ in fresh], state)
        processing_rows = outcome.processing_rows
        for event, record in fresh:
            event_started = time.perf_counter()
            previous_retries = known[event.event_id].retry_count if event.event_id in known else 0
            try:
                emissions = await self._handle(event, state)
            except ValidationError as error:
                log.warning("dead-lettering %s: %s: %s", event.log_context(), error.error_type, error)
                outcome.dead_lettered.append(Rejected(record, event, error, previous_retries))
                continue
            except SentinaiError as error:
                if not error.retryable:
                    log.warning("dead-lettering %s: %s: %s", event.log_context(), error.error_type, error)
                    outcome.dead_lettered.append(Rejected(record, event, error, previous_retries))
                    continue
                policy = self._retry_policy(error)
                if policy.exhausted(previous_retries):
                    log.warning(
                        "retries exhausted, dead-lettering %s topic=%s partition=%s offset=%s: %s",
                        event.log_context(), record.topic, record.partition, record.offset, error,
                    )
                    outcome.dead_lettered.append(Rejected(record, event, error, previous_retries))
                    continue
                retry_number = previous_retries + 1
                # Backoff counts from now, after the failed attempt (`state.now` is the batch's start,
                # before a slow `prepare` made the call that failed).
                due = self.clock() + timedelta(seconds=policy.delay_s(retry_number))
                log.info("retry %d of %s due %s: %s: %s", retry_number, event.log_context(), due.isoformat(), error.error_type, error)
                outcome.retrying.append(Rejected(record, event, error, retry_number))
                processing_rows.append(self._processing_row(event, record, "retrying", retry_number, state.now, error=error, next_retry_at=due))
                continue
            except Exception as error:  # a bug: park the event in the DLQ rather than block the partition
                log.exception("unexpected error in stage %s for %s", self.worker_type, event.log_context())
                internal = InternalError(f"{type(error).__name__}: {error}")
                outcome.dead_lettered.append(Rejected(record, event, internal, previous_retries))
                continue
            outputs = [
                event.derive(emission.event_type, stage=self.worker_type, position=index, payload=emission.payload, now=state.now)
                for index, emission in enumerate(emissions)
            ]
            outcome.outputs.extend(outputs)
            outcome.completed.append(event)
            row = self._processing_row(event, record, "completed", previous_retries, state.now)
            row["output_event_ids"] = [output.event_id for output in outputs]
            row["duration_ms"] = (time.perf_counter() - event_started) * 1000
            processing_rows.append(row)
        state.flush(writes)
        outcome.values = self._record_events(writes, fresh, outcome.outputs)
        self._record_dead_letters(writes, outcome.dead_lettered, state.now)
        return outcome

    async def _handle(self, event: EventEnvelope, state: BatchState) -> list[Emission]:
        """The stage's `handle`; if it raises, whatever it changed in `state` is taken back."""
        state.begin_event()
        try:
            emissions = await self.stage.handle(event, state)
        except BaseException:
            state.rollback_event()
            raise
        state.end_event()
        return emissions

    def _processing_row(
        self,
        event: EventEnvelope,
        record: InboundRecord,
        status: str,
        retry_count: int,
        now: datetime,
        *,
        error: SentinaiError | None = None,
        next_retry_at: datetime | None = None,
    ) -> dict[str, Any]:
        return {
            "event_id": event.event_id,
            "worker_type": self.worker_type,
            "event_type": event.event_type.value,
            "tenant_id": event.tenant_id,
            "exception_id": event.exception_id,
            "status": status,
            "retry_count": retry_count,
            "error_type": error.error_type if error else None,
            "error_message": str(error) if error else None,
            "next_retry_at": next_retry_at,
            "last_attempt_at": now,
            "duration_ms": None,
            "output_event_ids": [],
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "completed_at": now if status == "completed" else None,
        }

    async def _record_processing(self, connection: AsyncConnection, writes: bulk.WriteBatch, rows: list[dict[str, Any]]) -> None:
        """Send the batch's writes with its processing-log rows, as one statement that leaves
        nothing unless this worker claimed every one of its events."""
        if not rows:
            await writes.execute(connection)
            return
        table = schema.event_processing_log
        columns = tuple(rows[0])
        conflict = bulk.do_update(table, (), tuple(c for c in columns if c not in ("event_id", "worker_type")),
                                  constraint="uq_event_processing_event_worker", where=_STILL_RETRYING)
        writes.insert_rows(table, rows, conflict=conflict, returning=("event_id",))
        try:
            await writes.execute(connection, require_returned=len(rows))
        except Exception as error:
            if sqlstate_of(error) == bulk.REQUIRED_ROWS_MISSING:
                raise ConcurrentProcessingError(
                    f"another worker recorded some of this batch's {len(rows)} events first; nothing of the batch was written"
                ) from error
            raise

    def _record_events(
        self, writes: bulk.WriteBatch, fresh: list[tuple[EventEnvelope, InboundRecord]], outputs: list[EventEnvelope]
    ) -> dict[str, bytes]:
        """Queue the event-log rows of the batch's external inputs and of its outputs. Answers each
        output's Kafka value (terminal events, which no topic carries, have none), built around the
        payload and metadata JSON encoded for its row."""
        rows = [event_log_row(event, "source") for event, _ in fresh if event.event_type in _EXTERNAL_EVENT_TYPES]
        values = {}
        for event in outputs:
            payload, metadata = pydantic_core.to_json(event.payload), pydantic_core.to_json(event.metadata)
            row = event_log_row(event, self.worker_type)
            row["payload"], row["metadata"] = bulk.EncodedJson(payload.decode()), bulk.EncodedJson(metadata.decode())
            rows.append(row)
            if self._topics[event.event_type]:
                values[event.event_id] = event.to_bytes_around(payload, metadata)
        writes.insert_rows(schema.event_log, rows, conflict=bulk.do_nothing())
        return values

    def _record_dead_letters(self, writes: bulk.WriteBatch, rejected: list[Rejected], now: datetime) -> None:
        # The processing log's `failed` rows are for events that are not among the batch's completed
        # or retrying ones, so they and `_record_processing`'s rows never share a key.
        if not rejected:
            return
        dlq_rows = [dead_letter_row(item, self.worker_type, now) for item in rejected]
        writes.insert_rows(schema.dead_letter_queue, dlq_rows, conflict=bulk.do_nothing())
        failed_rows = [
            {
                "event_id": row["event_id"],
                "worker_type": self.worker_type,
                "event_type": row["event_type"] or "unknown",
                "tenant_id": row["tenant_id"] or "unknown",
                "exception_id": row["exception_id"] or "unknown",
                "status": "failed",
                "retry_count": row["retry_count"],
                "error_type": row["error_type"],
                "error_message": row["error_message"],
                "last_attempt_at": now,
                "topic": row["original_topic"],
                "partition": row["original_partition"],
                "offset": row["original_offset"],
            }
            for row in dlq_rows
        ]
        table = schema.event_processing_log
        conflict = bulk.do_update(table, (), ("status", "retry_count", "error_type", "error_message", "last_attempt_at"),
                                  constraint="uq_event_processing_event_worker", where=_STILL_RETRYING)
        writes.insert_rows(table, failed_rows, conflict=conflict)

    async def _recorded_outputs(self, connection: AsyncConnection, known: list[Known]) -> list[EventEnvelope]:
        ids = [event_id for entry in known for event_id in entry.output_event_ids]
        if not ids:
            return []
        rows = await bulk.select_by_keys(connection, schema.event_log, ("event_id",), ((event_id,) for event_id in ids))
        by_id = {row.event_id: row for row in rows}
        return [envelope_from_row(by_id[event_id]) for event_id in ids if event_id in by_id]

    # --- outputs --------------------------------------------------------------------------------

    def _dead_letter_records(self, rejected: list[Rejected]) -> list[OutboundRecord]:
        topic = self.settings.kafka.topic(DLQ_TOPIC)
        return [dead_letter_record(item, self.worker_type, topic) for item in rejected]

    def _outbound(self, events: list[EventEnvelope], values: dict[str, bytes]) -> list[OutboundRecord]:
        """Each event's records, with its value from `values` (by event id) where it is there."""
        records = []
        for event in events:
            topics = self._topics[event.event_type]
            if not topics:
                continue  # terminal: kept in event_log only
            value = values.get(event.event_id) or event.to_bytes()
            key = event.partition_key.encode()
            headers = (("event_type", event.event_type.value.encode()), ("tenant_id", event.tenant_id.encode()))
            records.extend(OutboundRecord(topic, key, value, headers) for topic in topics)
        return records



@dataclass
class _Outcome:
    dead_lettered: list[Rejected]
    outputs: list[EventEnvelope] = field(default_factory=list)
    completed: list[EventEnvelope] = field(default_factory=list)
    retrying: list[Rejected] = field(default_factory=list)
    processing_rows: list[dict[str, Any]] = field(default_factory=list)  # completed and retrying events
    values: dict[str, bytes] = field(default_factory=dict)  # the outputs' Kafka values, by event id
