"""One stage consumer: fetch from Kafka, dispatch key-ordered batches to the pool, produce outputs,
commit offsets. Knows nothing of Ray: the pool is reached through a `Submit` callable.

Delivery order for each batch: the pool commits its effects to PostgreSQL, the outputs are produced
and acknowledged (acks=all), then the batch's offsets complete and the lowest contiguous completed
offset of each partition is committed. A crash anywhere costs only redelivery.

A lane takes its next batch as soon as the pool has answered the last one: the next batch is fetched
and processed while the last one's outputs are produced. Each lane still produces its batches'
outputs one batch after the other, each only once the one before is acknowledged, so outputs keep
their order, and offsets still complete only after acknowledgement.

With a `TenantThrottle` (the intake stage's consumers), a tenant over its rate limit has its records
held here and dispatched as its tokens come back, while other tenants' records go on; its first held
record of a while is reported as a `BackpressureDetected` event. Held records are in flight like
dispatched ones: their offsets stay uncommitted until they are processed. Beyond `max_held_records`
the partitions pause. A rebalance or a stop lets every held record through at once (at most
`max_held_records`), so that the partitions can be handed over with nothing in flight.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from pipeline.events import EventEnvelope, EventType, new_event_id, partition_key, utc_now
from pipeline.kafka.lanes import Lane, Submit, lane_for
from pipeline.kafka.offsets import OffsetTracker
from pipeline.kafka.producing import send_in_batches
from pipeline.kafka.throttle import Backpressure, TenantThrottle
from pipeline.records import BatchResult, InboundRecord, OutboundRecord
from pipeline.retry import RetryPolicy

log = logging.getLogger(__name__)

_COMMIT_TIMEOUT_S = 10.0
_POSITION_TIMEOUT_S = 5.0
_REPORT_TIMEOUT_S = 5.0
_EXCEPTION_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")  # as EventEnvelope.exception_id


@dataclass
class ConsumerStats:
    records_fetched: int = 0
    batches_completed: int = 0
    records_completed: int = 0
    outputs_produced: int = 0
    pauses: int = 0
    backpressure_events: int = 0
    last_poll_at: float = 0.0
    last_commit_at: float = 0.0
    assigned: list[str] = field(default_factory=list)
    lag: dict[str, int] = field(default_factory=dict)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, loop: StageConsumerLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._loop.finish_in_flight()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("%s assigned %s", self._loop.name, sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))
        self._loop.note_share()
        await self._loop.note_positions(assigned)


class StageConsumerLoop:
    def __init__(
        self,
        *,
        name: str,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        topic: str,
        submit: Submit,
        lanes: int,
        max_in_flight_per_lane: int,
        max_batch_events: int,
        fetch_timeout_ms: int,
        commit_interval_s: float = 0.0,
        on_result: Callable[[BatchResult], None] | None = None,
        batch_retry: RetryPolicy | None = None,
        throttle: TenantThrottle | None = None,
        max_held_records: int = 10_000,
        backpressure_topic: str | None = None,
    ) -> None:
        self.name = name
        self.consumer = consumer
        self.producer = producer
        self.topic = topic
        self.max_in_flight_per_lane = max_in_flight_per_lane
        self.max_batch_events = max_batch_events
        self.fetch_timeout_ms = fetch_timeout_ms
        self.commit_interval_s = commit_interval_s
        self.on_result = on_result
        self.throttle = throttle
        self.max_held_records = max_held_records
        self.backpressure_topic = backpressure_topic
        retry = batch_retry or RetryPolicy(max_retries=0, base_delay_s=0.5, max_delay_s=10)
        self.lanes = [Lane(index, submit, batch_retry=retry) for index in range(lanes)]
        self.tracker = OffsetTracker()
        self.stats = ConsumerStats()
        self._stopping = asyncio.Event()
        self._paused = False
        self._lane_tasks: list[asyncio.Task[None]] = []
        self._progress = asyncio.Condition()
        self._committed: dict[tuple[str, int], int] = {}
        self._last_commit = -float("inf")  # time.monotonic() of the last commit attempt
        self._run_exited = asyncio.Event()
        self._positions: dict[tuple[str, int], int] = {}
        self._rewound_at: dict[tuple[str, int], int] = {}  # the log end each partition last started over at

    async def start(self) -> None:
        await self.producer.start()
        self.consumer.subscribe([self.topic], listener=_Rebalance(self))
        await self.consumer.start()
        self._lane_tasks = [asyncio.create_task(self._complete_lane(lane)) for lane in self.lanes]

    async def run(self) -> None:
        """Fetch and dispatch until `stop()`."""
        try:
            while not self._stopping.is_set():
                if self.throttle is not None:
                    self._submit(self.throttle.release())
                if self._saturated():
                    await self._pause_until_room()
                    continue
                self._resume()
                fetched = await self.consumer.getmany(timeout_ms=self.fetch_timeout_ms, max_records=None)
                self.stats.last_poll_at = time.time()
                self._dispatch([record for records in fetched.values() for record in records])
                if self.throttle is not None:
                    await self._report_backpressure(self.throttle.take_started())
                self._update_lag(fetched_from={tp for tp, records in fetched.items() if records})
                if time.monotonic() - self._last_commit >= self.commit_interval_s:
                    await self._commit()
        finally:
            self._run_exited.set()

    async def stop(self, grace_s: float) -> None:
        """Stop fetching, finish in-flight batches within `grace_s`, commit, close the clients."""
        self._stopping.set()
        async with self._progress:
            self._progress.notify_all()
        await self._run_exited.wait()
        try:
            await asyncio.wait_for(self.finish_in_flight(), timeout=grace_s)
        except TimeoutError:
            log.warning("%s: %d records still in flight after %.1fs grace; they will be redelivered",
                        self.name, self.tracker.in_flight(), grace_s)
        for task in self._lane_tasks:
            task.cancel()
        await asyncio.gather(*self._lane_tasks, return_exceptions=True)
        await self.consumer.stop()
        await self.producer.stop()

    async def finish_in_flight(self) -> None:
        if self.throttle is not None:
            self._submit(self.throttle.release_all())
        async with self._progress:
            await self._progress.wait_for(lambda: self.tracker.in_flight() == 0)
        await self._commit()

    # --- dispatch -------------------------------------------------------------------------------

    def _dispatch(self, consumed: list) -> None:  # type: ignore[type-arg]
        if not consumed:
            return
        self.stats.records_fetched += len(consumed)
        records = []
        for message in consumed:
            partition = (message.topic, message.partition)
            last = self.tracker.last_dispatched(partition)
            if last is not None and message.offset <= last:
                # Offsets went backwards: the broker lost its log (the bundled broker keeps it in memory).
                log.warning("%s: %s[%d] restarted at offset %d (was past %d): broker lost its data; following the new log",
                            self.name, message.topic, message.partition, message.offset, last)
                self.tracker.forget(partition)
            record = InboundRecord(
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                key=message.key,
                value=message.value,
                headers=tuple(message.headers or ()),
                timestamp_ms=message.timestamp,
            )
            # In flight from here on, even while the throttle holds it: its offset is not committed.
            self.tracker.dispatched((record.topic, record.partition), record.offset)
            self._positions[(record.topic, record.partition)] = record.offset + 1
            records.append(record)
        if self.throttle is not None:
            records = [record for record in records if self.throttle.admit(record)]
        self._submit(records)

    def _submit(self, records: list[InboundRecord]) -> None:
        if not records:
            return
        per_lane: list[list[InboundRecord]] = [[] for _ in self.lanes]
        for record in records:
            per_lane[lane_for(record.key, len(self.lanes))].append(record)
        for lane, lane_records in zip(self.lanes, per_lane, strict=True):
            for start in range(0, len(lane_records), self.max_batch_events):
                lane.submit(lane_records[start : start + self.max_batch_events])

    def _saturated(self) -> bool:
        if self.throttle is not None and self.throttle.held() >= self.max_held_records:
            return True
        return any(len(lane) >= self.max_in_flight_per_lane for lane in self.lanes)

    async def _report_backpressure(self, started: list[Backpressure]) -> None:
        """One `BackpressureDetected` event per tenant that started to be held, and a log line
        operators can grep for ("Rate limit exceeded"). Best effort: a lost report loses no event."""
        for item in started:
            if not _EXCEPTION_ID.fullmatch(item.exception_id):  # from a record's key, not validated yet
                item = dataclasses.replace(item, exception_id="unknown")
            self.stats.backpressure_events += 1
            log.warning("%s: Rate limit exceeded: tenant_id=%s exception_id=%s limit=%g/s burst=%d held=%d; "
                        "its events are slowed, not failed", self.name, item.tenant_id, item.exception_id,
                        item.limit.events_per_s, item.limit.burst, item.held)
            if self.backpressure_topic is None:
                continue
            try:
                record = self._backpressure_record(item, self.backpressure_topic)
                await asyncio.wait_for(asyncio.gather(*await send_in_batches(self.producer, [record])), _REPORT_TIMEOUT_S)
            except Exception as error:  # noqa: BLE001 - a report, not an event of the pipeline
                log.warning("%s: could not send BackpressureDetected for %s: %s", self.name, item.tenant_id, error)

    def _backpressure_record(self, item: Backpressure, topic: str) -> OutboundRecord:
        event = EventEnvelope(
            event_id=new_event_id(),
            event_type=EventType.BACKPRESSURE_DETECTED,
            tenant_id=item.tenant_id,
            exception_id=item.exception_id,
            timestamp=utc_now(),
            payload={"reason": "rate_limit", "topic": self.topic, "consumer": self.name,
                     "events_per_s": item.limit.events_per_s, "burst": item.limit.burst, "held": item.held},
        )
        headers = (("event_type", event.event_type.value.encode()), ("tenant_id", item.tenant_id.encode()))
        return OutboundRecord(topic, partition_key(item.tenant_id, item.exception_id).encode(), event.to_bytes(), headers)

    async def _pause_until_room(self) -> None:
        partitions = self.consumer.assignment()
        if partitions and not self._paused:
            self.consumer.pause(*partitions)
            self._paused = True
            self.stats.pauses += 1
        # Held records leave only when the fetch loop releases them: wake up for their next token.
        wake_after = self.throttle.seconds_until_release() if self.throttle is not None else None
        async with self._progress:
            try:
                await asyncio.wait_for(self._progress.wait_for(lambda: not self._saturated() or self._stopping.is_set()),
                                       timeout=None if wake_after is None else max(0.01, wake_after))
            except TimeoutError:
                return  # still paused; the loop releases what it may and comes back
        self._resume()

    def _resume(self) -> None:
        if self._paused:
            self.consumer.resume(*self.consumer.assignment())
            self._paused = False

    # --- completion -----------------------------------------------------------------------------

    async def _complete_lane(self, lane: Lane) -> None:
        while True:
            records, result = await lane.next_result()
            # The lane has room again: let the fetch loop dispatch while these outputs are produced
            # (waiting for their acknowledgement held every hop up by the linger and a round trip).
            async with self._progress:
                self._progress.notify_all()
            await self._produce(result)
            for record in records:
                self.tracker.completed((record.topic, record.partition), record.offset)
            self.stats.batches_completed += 1
            self.stats.records_completed += len(records)
            if self.on_result is not None:
                self.on_result(result)
            # No commit here: a commit issued while the group rebalances waits for the rebalance,
            # which waits for `finish_in_flight`, which waits for this lane. The fetch loop and the
            # rebalance callback commit instead.
            async with self._progress:
                self._progress.notify_all()

    async def _produce(self, result: BatchResult) -> None:
        if not result.outputs:
            return
        while True:
            try:
                await asyncio.gather(*await send_in_batches(self.producer, result.outputs))
                self.stats.outputs_produced += len(result.outputs)
                return
            except Exception as error:  # noqa: BLE001 - outputs are recorded; retrying can only duplicate, never lose
                log.warning("%s: producing %d outputs failed, retrying in 1s: %s", self.name, len(result.outputs), error)
                await asyncio.sleep(1.0)

    async def _commit(self) -> None:
        """Commit what completed since the last commit. The fetch loop does so at most every
        `commit_interval_s` (each commit is a request the broker serves, and the loop used to send
        one per batch); a stop or a rebalance commits at once."""
        self._last_commit = time.monotonic()
        commits = self.tracker.take_commits()
        if not commits:
            return
        offsets = {TopicPartition(topic, partition): offset for (topic, partition), offset in commits.items()}
        try:
            await asyncio.wait_for(self.consumer.commit(offsets), timeout=_COMMIT_TIMEOUT_S)
            self._committed.update(commits)
            self.stats.last_commit_at = time.time()
        except Exception as error:  # noqa: BLE001 - a lost commit only costs redelivery of done work
            log.warning("%s: offset commit failed (will be redelivered and deduplicated): %s", self.name, error)

    def note_share(self) -> None:
        """The throttle's share of each tenant's limit: this consumer's share of the topic's partitions."""
        if self.throttle is None:
            return
        partitions = self.consumer.partitions_for_topic(self.topic) or set()
        owned = sum(1 for tp in self.consumer.assignment() if tp.topic == self.topic)
        if partitions and owned:
            self.throttle.configure(self.throttle.limits, share=owned / len(partitions))

    async def note_positions(self, assigned: set[TopicPartition]) -> None:
        """Record where each newly assigned partition will be read from (the group's committed offset).
        After the broker lost its data, that can be an offset of the old log, past the new log's end:
        the past-the-end check must compare with it, not with what this consumer read before."""
        for tp in assigned:
            partition = (tp.topic, tp.partition)
            self._rewound_at.pop(partition, None)
            try:
                self._positions[partition] = await asyncio.wait_for(self.consumer.position(tp), timeout=_POSITION_TIMEOUT_S)
            except (TimeoutError, KafkaError) as error:
                log.warning("%s: no position for %s[%d] yet (%s); the past-the-end check waits for its first record",
                            self.name, tp.topic, tp.partition, error)
                self._positions.pop(partition, None)

    def _rewind_if_past_end(self, tp: TopicPartition, highwater: int | None) -> None:
        """A consumer positioned past the log end waits silently on the bundled broker (no
        OFFSET_OUT_OF_RANGE): when the log end falls below what we already read, the broker restarted
        empty, so start the partition over. Only for a partition that returned nothing: right after
        a restart the bundled broker can report a high watermark below the records it just returned,
        and rewinding then would re-read the same records forever."""
        partition = (tp.topic, tp.partition)
        position = self._positions.get(partition)
        if highwater is None or position is None or highwater >= position:
            return
        if self._rewound_at.get(partition) == highwater:
            return  # already started over at this log end: wait for it to move
        self._rewound_at[partition] = highwater
        log.warning("%s: %s[%d] log end %d is below our position %d: broker restarted without its data; "
                    "reading the partition from the beginning", self.name, tp.topic, tp.partition, highwater, position)
        self.consumer.seek(tp, 0)
        self._positions[(tp.topic, tp.partition)] = 0
        self._committed.pop((tp.topic, tp.partition), None)

    def _update_lag(self, fetched_from: set[TopicPartition]) -> None:
        """Lag as `kafka-consumer-groups --describe` shows it: log end minus committed offset. The log
        end comes from the last fetch's highwater (the bundled broker's end_offsets() is wrong)."""
        lag = {}
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            if tp not in fetched_from:
                self._rewind_if_past_end(tp, highwater)
            committed = self._committed.get((tp.topic, tp.partition))
            if highwater is not None:
                lag[f"{tp.topic}[{tp.partition}]"] = max(0, highwater - (committed or 0))
        self.stats.lag = lag
        self.stats.assigned = sorted(f"{tp.topic}[{tp.partition}]" for tp in self.consumer.assignment())
