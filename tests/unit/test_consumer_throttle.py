"""pipeline.kafka.consumer_loop with a TenantThrottle: a tenant over its rate limit is held back and
dispatched as its tokens return, the other tenant is not, held offsets are never committed past,
and a BackpressureDetected event is produced (fake Kafka clients, real time, small limits)."""

from __future__ import annotations

import asyncio
import json
import time

from pipeline.kafka.consumer_loop import StageConsumerLoop
from pipeline.kafka.throttle import TenantLimit, TenantThrottle
from pipeline.records import BatchResult, InboundRecord
from tests.unit.kafka_fakes import PARTITION, TOPIC, FakeConsumer, FakeProducer, until

BACKPRESSURE_TOPIC = "sentinai.backpressure"


def _loop(consumer: FakeConsumer, producer: FakeProducer, processed: list[tuple[float, InboundRecord]], *,
          limit: TenantLimit, max_held_records: int = 100) -> StageConsumerLoop:
    async def submit(lane: int, sequence: int, floor: int, batch: list[InboundRecord]) -> BatchResult:
        processed.extend((time.monotonic(), record) for record in batch)
        return BatchResult()

    throttle = TenantThrottle(report_interval_s=60.0)
    throttle.configure({"SLOW": limit})
    loop = StageConsumerLoop(
        name="intake-consumer-0", consumer=consumer, producer=producer, topic=TOPIC, submit=submit,  # type: ignore[arg-type]
        lanes=2, max_in_flight_per_lane=4, max_batch_events=500, fetch_timeout_ms=2, commit_interval_s=0.0,
        throttle=throttle, max_held_records=max_held_records, backpressure_topic=BACKPRESSURE_TOPIC,
    )
    loop._lane_tasks = [asyncio.create_task(loop._complete_lane(lane)) for lane in loop.lanes]
    return loop


async def _stop(loop: StageConsumerLoop, fetching: asyncio.Task[None]) -> None:
    loop._stopping.set()
    await fetching
    for task in loop._lane_tasks:
        task.cancel()


async def test_the_limited_tenant_is_slowed_the_other_is_not_and_nothing_is_committed_past_a_held_record() -> None:
    # SLOW at even offsets, all of one exception (so their order is the order they must keep).
    keys = [b"SLOW:EXC-A" if i % 2 == 0 else b"FAST:EXC-%d" % i for i in range(12)]
    consumer, producer, processed = FakeConsumer(12, keys), FakeProducer(ack_at_once=True), []
    loop = _loop(consumer, producer, processed, limit=TenantLimit(events_per_s=10, burst=1))
    started = time.monotonic()
    fetching = asyncio.create_task(loop.run())
    try:
        await until(lambda: sum(r.key.startswith(b"FAST") for _, r in processed) == 6)
        fast_done = time.monotonic() - started
        # SLOW's first record used its one token; at 10/s its other five take about half a second.
        assert sum(r.key.startswith(b"SLOW") for _, r in processed) < 6
        # Offset 2, SLOW's second record, is held: no commit may pass it, though 3, 5, ... are done.
        assert max((commit[PARTITION] for commit in consumer.commits), default=0) <= 2, consumer.commits
        await until(lambda: len(processed) == 12)
        slow_done = time.monotonic() - started
        await until(lambda: consumer.commits and consumer.commits[-1][PARTITION] == 12)
    finally:
        await _stop(loop, fetching)
    slow = [(at, r) for at, r in processed if r.key.startswith(b"SLOW")]
    assert [r.offset for _, r in slow] == [0, 2, 4, 6, 8, 10]  # in order
    assert slow_done - fast_done >= 0.2 and slow[-1][0] - slow[0][0] >= 0.45  # five tokens at 10/s
    assert slow[0][1].held_ms == 0 and all(r.held_ms > 0 for _, r in slow[1:])
    assert all(r.held_ms == 0 for _, r in processed if r.key.startswith(b"FAST"))
    # One BackpressureDetected, on the backpressure topic, naming the first held exception.
    assert producer.topics == [BACKPRESSURE_TOPIC]
    event = json.loads(producer.sent[0])
    assert (event["event_type"], event["tenant_id"], event["exception_id"]) == ("BackpressureDetected", "SLOW", "EXC-A")
    assert event["payload"]["events_per_s"] == 10 and event["payload"]["reason"] == "rate_limit"
    assert loop.stats.backpressure_events == 1


async def test_too_many_held_records_pause_the_partitions_until_the_throttle_lets_some_go() -> None:
    consumer, producer, processed = FakeConsumer(8, [b"SLOW:EXC-%d" % i for i in range(8)]), FakeProducer(ack_at_once=True), []
    paused: list[bool] = []
    consumer.pause = lambda *tps: paused.append(True)  # type: ignore[method-assign]
    consumer.resume = lambda *tps: paused.append(False)  # type: ignore[method-assign]
    loop = _loop(consumer, producer, processed, limit=TenantLimit(events_per_s=40, burst=1), max_held_records=2)
    fetching = asyncio.create_task(loop.run())
    try:
        await until(lambda: len(processed) == 8)
    finally:
        await _stop(loop, fetching)
    assert loop.stats.pauses >= 1 and True in paused and paused[-1] is False
    assert sorted(r.offset for _, r in processed) == list(range(8))


async def test_giving_the_partitions_up_lets_every_held_record_through_first() -> None:
    consumer, producer, processed = FakeConsumer(6, [b"SLOW:EXC-%d" % i for i in range(6)]), FakeProducer(ack_at_once=True), []
    loop = _loop(consumer, producer, processed, limit=TenantLimit(events_per_s=0.1, burst=1))
    fetching = asyncio.create_task(loop.run())
    try:
        await until(lambda: consumer.log_end == 6 and loop.tracker.in_flight() == 5)  # one processed, five held
        assert loop.throttle is not None and loop.throttle.held() == 5
        await asyncio.wait_for(loop.finish_in_flight(), 2.0)  # what a rebalance does
    finally:
        await _stop(loop, fetching)
    assert sorted(r.offset for _, r in processed) == list(range(6))
    assert consumer.commits[-1] == {PARTITION: 6}


async def test_a_held_record_whose_key_is_no_valid_exception_id_is_reported_as_unknown() -> None:
    keys = [b"SLOW:EXC-1", b"SLOW:not an id\nFAKE LOG LINE"]  # intake dead-letters what is invalid; the report must not fail
    consumer, producer, processed = FakeConsumer(2, keys), FakeProducer(ack_at_once=True), []
    loop = _loop(consumer, producer, processed, limit=TenantLimit(events_per_s=20, burst=1))
    fetching = asyncio.create_task(loop.run())
    try:
        await until(lambda: len(processed) == 2)
    finally:
        await _stop(loop, fetching)
    event = json.loads(producer.sent[0])
    assert (event["tenant_id"], event["exception_id"]) == ("SLOW", "unknown")
