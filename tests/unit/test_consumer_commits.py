"""pipeline.kafka.consumer_loop: how often a stage consumer commits offsets (fake Kafka clients)."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition

from pipeline.kafka.consumer_loop import StageConsumerLoop
from pipeline.records import BatchResult, InboundRecord
from tests.unit.kafka_fakes import PARTITION, TOPIC, FakeConsumer


async def _run(commit_interval_s: float, records: int) -> list[dict[TopicPartition, int]]:
    consumer = FakeConsumer(records)

    async def submit(lane: int, sequence: int, floor: int, batch: list[InboundRecord]) -> BatchResult:
        return BatchResult()

    loop = StageConsumerLoop(
        name="test", consumer=consumer, producer=None, topic=TOPIC, submit=submit,  # type: ignore[arg-type]
        lanes=1, max_in_flight_per_lane=1, max_batch_events=500, fetch_timeout_ms=10, commit_interval_s=commit_interval_s,
    )
    loop._lane_tasks = [asyncio.create_task(loop._complete_lane(lane)) for lane in loop.lanes]
    fetching = asyncio.create_task(loop.run())
    await asyncio.sleep(0.4)  # every record fetched and completed, many fetches since
    during_run = list(consumer.commits)
    loop._stopping.set()
    await fetching
    await loop.finish_in_flight()  # what a stop or a rebalance does: commit at once
    for task in loop._lane_tasks:
        task.cancel()
    return [*during_run, {PARTITION: -1}, *consumer.commits[len(during_run):]]


async def test_without_an_interval_every_fetch_commits_what_completed() -> None:
    commits = await _run(0.0, 5)
    during_run = commits[: commits.index({PARTITION: -1})]
    assert len(during_run) >= 3
    assert during_run[-1] == {PARTITION: 5}  # the next offset to read


async def test_the_fetch_loop_commits_at_most_once_per_interval_and_a_stop_commits_the_rest() -> None:
    commits = await _run(60.0, 5)
    marker = commits.index({PARTITION: -1})
    during_run, at_stop = commits[:marker], commits[marker + 1 :]
    # The first fetch may commit (nothing had been committed yet); then not again within the minute.
    assert len(during_run) <= 1
    assert at_stop == [{PARTITION: 5}]
