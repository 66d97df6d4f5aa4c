"""pipeline.kafka.consumer_loop: a lane takes its next batch while the last one's outputs are being
produced, yet outputs go out in batch order and offsets complete only once outputs are acknowledged
(fake Kafka clients)."""

from __future__ import annotations

import asyncio

from pipeline.kafka.consumer_loop import StageConsumerLoop
from pipeline.records import BatchResult, InboundRecord, OutboundRecord
from tests.unit.kafka_fakes import PARTITION, TOPIC, FakeConsumer, FakeProducer, until

OUTPUT_TOPIC = "sentinai.policy"


async def test_the_next_batch_is_processed_while_outputs_wait_for_acknowledgement_and_stay_in_order() -> None:
    consumer, producer = FakeConsumer(3), FakeProducer()
    submitted: list[int] = []

    async def submit(lane: int, sequence: int, floor: int, batch: list[InboundRecord]) -> BatchResult:
        submitted.extend(record.offset for record in batch)
        return BatchResult(outputs=[OutboundRecord(OUTPUT_TOPIC, record.key, f"out-{record.offset}".encode(), ())
                                    for record in batch])

    loop = StageConsumerLoop(
        name="test", consumer=consumer, producer=producer, topic=TOPIC, submit=submit,  # type: ignore[arg-type]
        lanes=1, max_in_flight_per_lane=1, max_batch_events=500, fetch_timeout_ms=5, commit_interval_s=0.0,
    )
    loop._lane_tasks = [asyncio.create_task(loop._complete_lane(lane)) for lane in loop.lanes]
    fetching = asyncio.create_task(loop.run())
    try:
        # Batch 0's outputs are sent and not acknowledged: batch 1 is processed meanwhile, but its
        # outputs wait for batch 0's acknowledgement, and no offset completes.
        await until(lambda: len(submitted) == 2)
        await asyncio.sleep(0.05)
        assert producer.sent == [b"out-0"]
        assert submitted == [0, 1]  # one batch in the pool at a time: batch 2 waits for the lane
        assert all(commit[PARTITION] == 0 for commit in consumer.commits) and loop.tracker.in_flight() == 2

        producer.acks[0].set_result(None)
        await until(lambda: producer.sent == [b"out-0", b"out-1"] and submitted == [0, 1, 2])
        await until(lambda: {PARTITION: 1} in consumer.commits)  # offset 0 done: the next to read is 1
        assert max(commit[PARTITION] for commit in consumer.commits) == 1

        producer.acks[1].set_result(None)
        await until(lambda: len(producer.acks) == 3)
        producer.acks[2].set_result(None)
        await until(lambda: loop.tracker.in_flight() == 0)
        assert producer.sent == [b"out-0", b"out-1", b"out-2"]
    finally:
        loop._stopping.set()
        async with loop._progress:
            loop._progress.notify_all()
        await fetching
        for task in loop._lane_tasks:
            task.cancel()
        await asyncio.gather(*loop._lane_tasks, return_exceptions=True)
    await loop.finish_in_flight()
    assert consumer.commits[-1] == {PARTITION: 3}
