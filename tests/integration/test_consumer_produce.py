"""A stage consumer's outputs, produced as one record batch per partition, against the real broker:
every record lands where Kafka's default partitioner puts its key, once, in order, with its headers."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

import pytest
from aiokafka.partitioner import DefaultPartitioner

from cluster.embedded.broker import BundledBroker
from pipeline.kafka import StageConsumerLoop, ensure_topics, make_consumer, make_producer
from pipeline.records import BatchResult, OutboundRecord
from pipeline.settings import KafkaSettings
from tests.integration.helpers import read_topic

pytestmark = pytest.mark.integration

_PARTITIONS = 4


async def test_outputs_land_on_the_default_partitioners_partition_in_order(broker: BundledBroker) -> None:
    bootstrap = broker.start()
    run = uuid.uuid4().hex[:8]
    first, second = f"produce-a-{run}", f"produce-b-{run}"
    settings = KafkaSettings(partitions=_PARTITIONS)
    await ensure_topics(settings, bootstrap, [first, second])
    producer = make_producer(settings, bootstrap, "test-producer")
    loop = StageConsumerLoop(
        name="test", consumer=make_consumer(settings, bootstrap, f"group-{run}", "test-consumer"), producer=producer,
        topic=first, submit=None, lanes=1, max_in_flight_per_lane=1, max_batch_events=500, fetch_timeout_ms=50,  # type: ignore[arg-type]
    )
    # 2 KB values: 600 records are ~1.2 MB, so each partition needs several 256 KB batches.
    keys = [f"FIN_ACME:EXC-{index}".encode() for index in range(40)]
    outputs = [
        OutboundRecord(topic, keys[index % len(keys)], f"{index:06d}".encode() + b"x" * 2048, (("event_type", b"Test"), ("seq", str(index).encode())))
        for index in range(600) for topic in (first, second)
    ]
    await producer.start()
    try:
        await loop._produce(BatchResult(outputs=outputs))
    finally:
        await producer.stop()
        await loop.consumer.stop()

    partitions = list(range(_PARTITIONS))
    for topic in (first, second):
        records = await read_topic(bootstrap, topic, 600)
        assert len(records) == 600
        sequences_by_key: dict[bytes, list[int]] = defaultdict(list)
        for record in records:
            assert record.partition == DefaultPartitioner()(record.key, partitions, partitions)
            headers = dict(record.headers)
            assert headers["event_type"] == b"Test"
            assert int(record.value[:6]) == int(headers["seq"])
            sequences_by_key[record.key].append(int(headers["seq"]))
        assert sorted(sequences_by_key) == sorted(keys)
        for sequences in sequences_by_key.values():
            assert sequences == sorted(sequences)  # one key's records in the order they were produced


async def test_output_batches_do_not_wait_for_the_producer_linger(broker: BundledBroker) -> None:
    """The loop closes each batch it queues, and aiokafka sends a closed batch at once: with a
    one-minute linger, outputs are still acknowledged within seconds (an open batch would wait)."""
    bootstrap = broker.start()
    run = uuid.uuid4().hex[:8]
    topic = f"produce-linger-{run}"
    settings = KafkaSettings(partitions=_PARTITIONS, producer_linger_ms=60_000)
    await ensure_topics(settings, bootstrap, [topic])
    producer = make_producer(settings, bootstrap, "test-producer")
    loop = StageConsumerLoop(
        name="test", consumer=None, producer=producer, topic=topic, submit=None,  # type: ignore[arg-type]
        lanes=1, max_in_flight_per_lane=1, max_batch_events=500, fetch_timeout_ms=50,
    )
    outputs = [OutboundRecord(topic, f"FIN_ACME:EXC-{index}".encode(), b"{}", ()) for index in range(20)]
    await producer.start()
    try:
        async with asyncio.timeout(20):
            await loop._produce(BatchResult(outputs=outputs))
    finally:
        await producer.stop()
    assert len(await read_topic(bootstrap, topic, 20)) == 20
