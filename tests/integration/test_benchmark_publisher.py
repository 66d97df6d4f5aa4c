"""The benchmark's publisher against the real broker: every prepared event reaches the intake topic
once, each exception's events in the order they were prepared, paced over the offered time, and each
is acknowledged."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict

import pytest

from benchmarks.publisher import prepare_events, publish_paced
from cluster.embedded.broker import BundledBroker
from pipeline.kafka import ensure_topics
from pipeline.packs import load_packs
from pipeline.routing import input_topic
from pipeline.settings import KafkaSettings, Settings
from tests.integration.helpers import read_topic

pytestmark = pytest.mark.integration


async def test_publish_paced_delivers_every_event_once_in_order_at_the_offered_rate(broker: BundledBroker) -> None:
    bootstrap = broker.start()
    kafka = KafkaSettings(bootstrap_servers=bootstrap, partitions=2, topic_prefix=f"pub-{uuid.uuid4().hex[:8]}-")
    settings = Settings(kafka=kafka)
    topic = input_topic(kafka, "intake")
    await ensure_topics(kafka, bootstrap, [topic])
    events = prepare_events(load_packs(), 300, seed=7)

    started = time.monotonic()
    outcome = await publish_paced(settings, events, rate_per_s=1000)
    elapsed = time.monotonic() - started

    assert outcome.failed == 0 and outcome.errors == []
    assert all(acked >= sent > 0 for sent, acked in zip(outcome.sent_at, outcome.acked_at, strict=True))
    assert elapsed >= 0.25  # three ticks of 100 ms: the first sends at once, the last at 0.2 s
    records = await read_topic(bootstrap, topic, len(events))
    assert sorted(record.value for record in records) == sorted(event.value for event in events)
    by_key: dict[bytes, list[bytes]] = defaultdict(list)
    for record in sorted(records, key=lambda record: (record.partition, record.offset)):
        by_key[record.key].append(record.value)
    expected: dict[bytes, list[bytes]] = defaultdict(list)
    for event in events:
        expected[event.key].append(event.value)
    assert by_key == expected
    assert all(dict(record.headers)["tenant_id"] == record.key.split(b":")[0] for record in records)
