"""Pre-generated demo exceptions, published at a fixed offered rate with each one's publish time.

Events are generated and encoded before the clock starts, so the publisher only hands bytes to the
producer. Pacing works in ticks (100 ms by default): at the start of tick k every event due by the
end of that tick is sent, then the publisher sleeps until the next tick. A tick that starts late
(the producer or the machine could not keep up) sends what is due at once; the worst lateness is
reported, so an offered rate that the driver itself could not offer is visible.

A tick's events go as one record batch per partition (`send_in_batches`, as the stage consumers
produce), where a `send()` per event cost the driver about 25 µs of Python each: the load generator
shares the machine with the pipeline it measures, so what it spends is taken from the pipeline.
An event's acknowledgement time is its tick's: when every batch of the tick is acknowledged.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from pipeline.demo_traffic import generate_stream
from pipeline.events import utc_now
from pipeline.ingest import ingestion_event
from pipeline.kafka import make_producer, send_in_batches
from pipeline.packs import PackRegistry
from pipeline.records import OutboundRecord
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

    async def acknowledged(first: int, last: int, batches: list[asyncio.Future[object]]) -> None:
        answers = await asyncio.gather(*batches, return_exceptions=True)
        errors = [answer for answer in answers if isinstance(answer, BaseException)]
        if errors:
            outcome.failed += last - first
            outcome.errors.extend(repr(error) for error in errors[: max(0, 5 - len(outcome.errors))])
            return
        outcome.acked_at[first:last] = [time.time()] * (last - first)

    await producer.start()
    try:
        ticks = []
        started = time.monotonic()
        outcome.started_at = time.time()
        index, tick = 0, 0
        while index < count:
            outcome.max_tick_lateness_s = max(outcome.max_tick_lateness_s, time.monotonic() - (started + tick * tick_s))
            due = min(count, round(rate_per_s * (tick + 1) * tick_s))
            if due > index:
                records = [OutboundRecord(topic, event.key, event.value, event.headers) for event in events[index:due]]
                outcome.sent_at[index:due] = [time.time()] * (due - index)
                ticks.append(asyncio.ensure_future(acknowledged(index, due, await send_in_batches(producer, records))))
                index = due
            tick += 1
            await asyncio.sleep(max(0.0, started + tick * tick_s - time.monotonic()))
        outcome.finished_at = time.time()
        await asyncio.gather(*ticks)
    finally:
        await producer.stop()
    return outcome
