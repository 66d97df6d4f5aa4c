"""aiokafka clients configured for the platform, topic creation, and Kafka error classification.

Kafka errors are classified by the client's own `retriable` flag, once, here. Settings work for
Apache Kafka and for the bundled broker (which lacks idempotent producers and reports existing topics
as error code 36 in the response rather than raising).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from pipeline.errors import ConfigurationError, KafkaUnavailableError, SentinaiError
from pipeline.kafka.partitioner import partition_for_key
from pipeline.settings import KafkaSettings

log = logging.getLogger(__name__)


def classify_kafka_error(error: BaseException) -> SentinaiError:
    if isinstance(error, SentinaiError):
        return error
    if isinstance(error, KafkaError) and not error.retriable:
        return ConfigurationError(f"Kafka: {type(error).__name__}: {error}")
    return KafkaUnavailableError(f"Kafka: {type(error).__name__}: {error}")


def make_producer(settings: KafkaSettings, bootstrap: str, client_id: str) -> AIOKafkaProducer:
    # acks=all: an output counts as delivered only when every in-sync replica has it. Idempotence
    # stays off: the bundled broker rejects InitProducerId v0; duplicates are handled by event ids.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=False,
        linger_ms=settings.producer_linger_ms,
        max_batch_size=256 * 1024,
        max_request_size=settings.max_request_size,
        request_timeout_ms=30_000,
        partitioner=partition_for_key,
    )


def make_consumer(settings: KafkaSettings, bootstrap: str, group_id: str, client_id: str, *topics: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset=settings.auto_offset_reset,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        max_poll_records=settings.max_poll_records,
        fetch_max_wait_ms=settings.fetch_timeout_ms,
        max_partition_fetch_bytes=max(settings.max_request_size, 1024 * 1024),
        fetch_max_bytes=64 * 1024 * 1024,
        isolation_level="read_uncommitted",
    )


async def ensure_topics(settings: KafkaSettings, bootstrap: str, topics: Iterable[str]) -> list[str]:
    """Create the topics that do not exist yet, with the configured partition count.

    Checks each topic's error code in the response (the bundled broker answers "already exists" as
    code 36 there instead of raising). Returns the topics created. Raises ConfigurationError when the
    broker refuses a topic, KafkaUnavailableError when it cannot be reached.
    """
    wanted = list(topics)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="sentinai-admin", request_timeout_ms=15_000)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [topic for topic in wanted if topic not in existing]
        if not missing:
            return []
        response = await admin.create_topics(
            [NewTopic(topic, settings.partitions, settings.replication_factor) for topic in missing]
        )
        created = []
        for topic_error in response.topic_errors:
            name, code = topic_error[0], topic_error[1]
            if code == 0:
                created.append(name)
            elif for_code(code) is TopicAlreadyExistsError:
                continue
            else:
                message = topic_error[2] if len(topic_error) > 2 else ""
                raise ConfigurationError(f"Kafka refused to create topic {name}: {for_code(code).__name__} {message}")
        log.info("created topics %s with %d partitions", created, settings.partitions)
        return created
    except SentinaiError:
        raise
    except Exception as error:
        raise classify_kafka_error(error) from error
    finally:
        await admin.close()


async def list_topics(bootstrap: str) -> set[str]:
    """The broker's topics (a metadata request for all topics auto-creates none)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="sentinai-admin", request_timeout_ms=15_000)
    try:
        await admin.start()
        return set(await admin.list_topics())
    except Exception as error:
        raise classify_kafka_error(error) from error
    finally:
        await admin.close()


async def topic_partition_counts(bootstrap: str, topics: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="sentinai-admin", request_timeout_ms=15_000)
    try:
        await admin.start()
        described = await admin.describe_topics(topics)
        return {entry["topic"]: len(entry["partitions"]) for entry in described if entry.get("error_code", 0) == 0}
    finally:
        await admin.close()
