"""A fake aiokafka consumer for tests of pipeline.kafka.consumer_loop: one partition, one record per
fetch, every commit remembered."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition

TOPIC = "sentinai.triage"
PARTITION = TopicPartition(TOPIC, 0)


class FakeConsumer:
    """Hands out `count` records one per fetch, then nothing; remembers every commit."""

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
        """The loop pauses fetching while its lanes are full."""

    def resume(self, *partitions: TopicPartition) -> None:
        """And resumes when one has room."""

    def assignment(self) -> set[TopicPartition]:
        return {PARTITION}

    def highwater(self, tp: TopicPartition) -> int:
        return self.log_end
