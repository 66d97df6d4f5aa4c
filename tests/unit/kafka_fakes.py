"""Fake aiokafka clients for tests of pipeline.kafka.consumer_loop: a consumer of one partition, one
record per fetch, every commit remembered; a producer that acknowledges when told."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition

TOPIC = "sentinai.triage"
PARTITION = TopicPartition(TOPIC, 0)


class FakeConsumer:
    """Hands out `count` records one per fetch, then nothing; remembers every commit."""

    def __init__(self, count: int, keys: list[bytes] | None = None) -> None:
        self.log_end = count
        keys = keys or [b"FIN_ACME:EXC-1"] * count
        self._pending = [SimpleNamespace(topic=TOPIC, partition=0, offset=offset, key=keys[offset], value=b"{}",
                                         headers=(), timestamp=0) for offset in range(count)]
        self.commits: list[dict[TopicPartition, int]] = []

    async def getmany(self, timeout_ms: int, max_records: Any = None) -> dict[TopicPartition, list[Any]]:
        await asyncio.sleep(timeout_ms / 1000)
        return {PARTITION: [self._pending.pop(0)]} if self._pending else {}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))

    def pause(self, *partitions: TopicPartition) -> None:
        """The loop pauses fetching while its lanes are full."""

    def resume(self, *partitions: TopicPartition) -> None:
        """And resumes when one has room."""

    def assignment(self) -> set[TopicPartition]:
        return {PARTITION}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    def highwater(self, tp: TopicPartition) -> int:
        return self.log_end


class FakeBatchBuilder:
    def __init__(self) -> None:
        self.values: list[bytes] = []
        self.closed = False

    def append(self, *, key: bytes, value: bytes, timestamp: Any, headers: Any) -> object:
        assert not self.closed
        self.values.append(value)
        return object()

    def close(self) -> None:
        self.closed = True


class FakeProducer:
    """Acknowledges a sent batch only when the test says so, or at once (`ack_at_once`)."""

    def __init__(self, *, ack_at_once: bool = False) -> None:
        self.sent: list[bytes] = []
        self.topics: list[str] = []
        self.acks: list[asyncio.Future[None]] = []
        self.ack_at_once = ack_at_once

    async def partitions_for(self, topic: str) -> set[int]:
        return {0}

    def create_batch(self) -> FakeBatchBuilder:
        return FakeBatchBuilder()

    async def send_batch(self, builder: FakeBatchBuilder, topic: str, partition: int) -> asyncio.Future[None]:
        assert builder.closed  # queued closed: sent at once, not after the linger
        self.sent.extend(builder.values)
        self.topics.extend(topic for _ in builder.values)
        self.acks.append(asyncio.get_running_loop().create_future())
        if self.ack_at_once:
            self.acks[-1].set_result(None)
        return self.acks[-1]


async def until(condition: Any, timeout_s: float = 5.0) -> None:
    """Poll `condition()` every 5 ms; fail after `timeout_s`."""
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.005)
    await asyncio.wait_for(poll(), timeout_s)
