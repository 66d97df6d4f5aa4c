"""pipeline.kafka.consumer_loop: how often a stage consumer commits offsets (fake Kafka clients)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition

from pipeline.kafka.consumer_loop import StageConsumerLoop
from pipeline.records import BatchResult, InboundRecord

TOPIC = "sentinai.triage"
PARTITION = TopicPartition(TOPIC, 0)


class FakeConsumer:
    """Hands out `records` one per fetch, then nothing; remembers every commit."""

    def __init__(self, count: int) -> None:
        self.log_end = count
        self._pending = [SimpleNamespace(topic=TOPIC, partition=0, offset=offset, key=b"FIN_ACME:EXC-1", value=b"{}",
                                         headers=(), timestamp=0) for offset in range(count)]
        self.commits: list[dict[TopicPartition, int]] = []

    async def getmany(self, timeout_ms: int, max_records: Any = None) -> dict[TopicPartition, list[Any]]:
        await asyncio.sleep(timeout_ms / 1000)
        return {PARTITION: [self._pending.pop(0)]} if self._pending else {}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))

    def pause(self, *partitions: TopicPartition) -> None:
        """The loop pauses fetching while its one batch is in flight."""

    def resume(self, *partitions: TopicPartition) -> None:
        """And resumes when it completes."""

    def assignment(self) -> set[TopicPartition]:
        return {PARTITION}

    def highwater(self, tp: TopicPartition) -> int:
        return self.log_end


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
