"""Pre-generated demo exceptions, published at a fixed offered rate with each one's publish time.

Events are generated and encoded before the clock starts, so the publisher only hands bytes to the
producer. Pacing works in ticks (100 ms by default): at the start of tick k every event due by the
end of that tick is sent, then the publisher sleeps until the next tick. A tick that starts late
(the producer or the machine could not keep up) sends what is due at once; the worst lateness is
reported, so an offered rate that the driver itself could not offer is visible.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from pipeline.demo_traffic import generate_stream
from pipeline.events import utc_now
from pipeline.ingest import ingestion_event
from pipeline.kafka import make_producer
from pipeline.packs import PackRegistry
from pipeline.routing import input_topic
from pipeline.settings import Settings


@dataclass(frozen=True, slots=True)
class PreparedEvent:
    tenant_id: str
    exception_id: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


@dataclass
class PublishOutcome:
    """Wall-clock (time.time) send and acknowledgement times, index-aligned with the events."""

    sent_at: list[float]
    acked_at: list[float]
    failed: int = 0
    started_at: float = 0.0
    finished_at: float = 0.0
    max_tick_lateness_s: float = 0.0
    errors: list[str] = field(default_factory=list)


def prepare_events(packs: PackRegistry, count: int, seed: int, source: str = "benchmark") -> list[PreparedEvent]:
    """`count` ExceptionIngested events of the active demo tenants, encoded for the intake topic."""
    tenants = [packs.view(tenant_id) for tenant_id in sorted(packs.tenants) if packs.tenants[tenant_id].status == "active"]
    prepared = []
    for item in generate_stream(seed, tenants, count, start=utc_now()):
        event = ingestion_event(item["tenant_id"], item["exception"], packs=packs, now=utc_now(), source=source)
        prepared.append(
            PreparedEvent(
                event.tenant_id,
                event.exception_id,
                event.partition_key.encode(),
                event.to_bytes(),
                (("tenant_id", event.tenant_id.encode()),),
            )
        )
    return prepared


async def publish_paced(
    settings: Settings, events: list[PreparedEvent], *, rate_per_s: float, tick_s: float = 0.1
) -> PublishOutcome:
    """Send `events` at `rate_per_s` with the platform's producer settings (acks=all); wait for every
    acknowledgement. A send that fails is counted in `failed` (its event can never complete)."""
    assert settings.kafka.bootstrap_servers
    producer = make_producer(settings.kafka, settings.kafka.bootstrap_servers, "sentinai-benchmark")
    topic = input_topic(settings.kafka, "intake")
    count = len(events)
    outcome = PublishOutcome(sent_at=[0.0] * count, acked_at=[0.0] * count)

    def acknowledged(index: int, future: asyncio.Future[object]) -> None:
        if future.cancelled() or future.exception() is not None:
            outcome.failed += 1
            if len(outcome.errors) < 5:
                outcome.errors.append(repr(future.exception()))
        else:
            outcome.acked_at[index] = time.time()

    await producer.start()
    try:
        deliveries = []
        started = time.monotonic()
        outcome.started_at = time.time()
        index, tick = 0, 0
        while index < count:
            outcome.max_tick_lateness_s = max(outcome.max_tick_lateness_s, time.monotonic() - (started + tick * tick_s))
            due = min(count, round(rate_per_s * (tick + 1) * tick_s))
            while index < due:
                event = events[index]
                outcome.sent_at[index] = time.time()
                delivery = await producer.send(topic, event.value, key=event.key, headers=list(event.headers))
                delivery.add_done_callback(lambda future, at=index: acknowledged(at, future))
                deliveries.append(delivery)
                index += 1
            tick += 1
            await asyncio.sleep(max(0.0, started + tick * tick_s - time.monotonic()))
        outcome.finished_at = time.time()
        await asyncio.gather(*deliveries, return_exceptions=True)
    finally:
        await producer.stop()
    return outcome
