"""Publish exceptions to the `exceptions` topic: from a JSON Lines file, or as generated demo traffic."""

from __future__ import annotations

import asyncio
import random
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipeline.errors import ValidationError
from pipeline.events import EventEnvelope, utc_now
from pipeline.ingest import ingestion_event, parse_submission_line
from pipeline.kafka import make_producer
from pipeline.packs import PackRegistry
from pipeline.routing import input_topic
from pipeline.settings import Settings


@dataclass
class PublishReport:
    sent: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    exception_ids: list[str] = field(default_factory=list)


async def _as_async(events: Iterable[EventEnvelope] | AsyncIterator[EventEnvelope]) -> AsyncIterator[EventEnvelope]:
    if isinstance(events, AsyncIterator):
        async for event in events:
            yield event
    else:
        for event in events:
            yield event


async def publish(
    settings: Settings, events: Iterable[EventEnvelope] | AsyncIterator[EventEnvelope], *, total: int | None, progress: bool
) -> int:
    """Produce events to the intake topic (acks=all); returns how many were acknowledged."""
    assert settings.kafka.bootstrap_servers
    producer = make_producer(settings.kafka, settings.kafka.bootstrap_servers, "sentinai-cli")
    topic = input_topic(settings.kafka, "intake")
    await producer.start()
    bar = tqdm(total=total, unit="exc", disable=not progress, file=sys.stderr)
    sent = 0
    try:
        pending = []
        async for event in _as_async(events):
            pending.append(await producer.send(topic, event.to_bytes(), key=event.partition_key.encode(),
                                               headers=[("tenant_id", event.tenant_id.encode())]))
            if len(pending) >= 500:
                await asyncio.gather(*pending)
                sent += len(pending)
                bar.update(len(pending))
                pending = []
        await asyncio.gather(*pending)
        sent += len(pending)
        bar.update(len(pending))
    finally:
        bar.close()
        await producer.stop()
    return sent


def read_submissions(path: Path, packs: PackRegistry, report: PublishReport) -> Iterator[EventEnvelope]:
    """Valid lines as events; invalid ones recorded in `report.rejected` with their line number."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                tenant_id, exception = parse_submission_line(line)
                event = ingestion_event(tenant_id, exception, packs=packs, now=utc_now(), source=f"file:{path.name}")
            except ValidationError as error:
                report.rejected.append((number, str(error)))
                continue
            report.exception_ids.append(event.exception_id)
            yield event


def submit_file(settings: Settings, path: Path, packs: PackRegistry, *, progress: bool = True) -> PublishReport:
    report = PublishReport()
    total = sum(1 for line in path.open(encoding="utf-8") if line.strip())
    report.sent = asyncio.run(publish(settings, read_submissions(path, packs, report), total=total, progress=progress))
    return report


async def demo_events(
    packs: PackRegistry, *, rate: float, duration_s: float, seed: int, stop: threading.Event | None = None
) -> AsyncIterator[EventEnvelope]:
    """Generated exceptions for the demo tenants at `rate` per second for `duration_s` seconds (or until `stop`)."""
    from pipeline.demo_traffic import generate_stream

    tenants = [packs.view(tenant_id) for tenant_id in sorted(packs.tenants) if packs.tenants[tenant_id].status == "active"]
    count = int(rate * duration_s)
    started = time.monotonic()
    for index, item in enumerate(generate_stream(seed, tenants, count, start=utc_now())):
        if stop is not None and stop.is_set():
            return
        due = started + index / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        yield ingestion_event(item["tenant_id"], item["exception"], packs=packs, now=utc_now(), source="demo")


def run_demo(settings: Settings, packs: PackRegistry, *, rate: float, duration_s: float, seed: int | None = None,
             progress: bool = True, stop: threading.Event | None = None) -> int:
    seed = seed if seed is not None else random.randrange(1 << 30)
    events = demo_events(packs, rate=rate, duration_s=duration_s, seed=seed, stop=stop)
    return asyncio.run(publish(settings, events, total=int(rate * duration_s), progress=progress))


def describe(report: PublishReport) -> list[str]:
    lines = [f"line {number}: {reason}" for number, reason in report.rejected]
    lines.append(f"sent {report.sent} exception(s), rejected {len(report.rejected)} line(s)")
    return lines


def first_ids(report: PublishReport, limit: int = 5) -> Any:
    return report.exception_ids[:limit]
