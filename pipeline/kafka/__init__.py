"""Kafka adapters: clients, topic creation, offset tracking and the key-ordered consumer loop."""

from pipeline.kafka.client import classify_kafka_error, ensure_topics, make_consumer, make_producer
from pipeline.kafka.consumer_loop import ConsumerStats, StageConsumerLoop
from pipeline.kafka.lanes import SKIPPED, SequenceGate, lane_for
from pipeline.kafka.offsets import OffsetTracker
from pipeline.kafka.producing import send_in_batches

__all__ = [
    "SKIPPED",
    "ConsumerStats",
    "OffsetTracker",
    "SequenceGate",
    "StageConsumerLoop",
    "classify_kafka_error",
    "ensure_topics",
    "lane_for",
    "make_consumer",
    "make_producer",
    "send_in_batches",
]
