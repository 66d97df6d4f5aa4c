"""Shared steps of the pipeline integration tests: deploy, publish, wait for final states, expect."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer

from cluster import platform
from cluster.publish import publish
from pipeline.demo_traffic import generate_stream
from pipeline.events import EventEnvelope, utc_now
from pipeline.ingest import ingestion_event
from pipeline.packs import PackRegistry, load_packs
from pipeline.settings import Settings
from pipeline.stages.intake import normalise_exception
from pipeline.stages.playbook import needs_approval_gate
from pipeline.stages.policy import evaluate_policy
from pipeline.triage import RulesBackend, TriageInput, assess_severity

FINAL_STATUSES = ("resolved", "pending_external", "awaiting_approval", "escalated", "rejected", "non_actionable")
ENDED_STATUSES = ("resolved", "pending_external", "escalated", "non_actionable")


async def read_topic(bootstrap: str, topic: str, expected: int) -> list:  # type: ignore[type-arg]
    """Every record of `topic` from the beginning, once `expected` have arrived (30 s at most)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    records = []
    try:
        async with asyncio.timeout(30):
            while len(records) < expected:
                fetched = await consumer.getmany(timeout_ms=500)
                records += [record for batch in fetched.values() for record in batch]
    finally:
        await consumer.stop()
    return records


def asyncpg_dsn(settings: Settings) -> str:
    assert settings.database.url is not None
    return settings.database.url.get_secret_value().replace("postgresql+asyncpg://", "postgresql://", 1)


async def query(settings: Settings, sql: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(asyncpg_dsn(settings))
    try:
        return await connection.fetch(sql, *args)
    finally:
        await connection.close()


def fetch(settings: Settings, sql: str, *args: Any) -> list[asyncpg.Record]:
    return asyncio.run(query(settings, sql, *args))


@contextmanager
def running_platform(settings: Settings, *, sla_monitor: bool = False) -> Iterator[platform.Deployment]:
    """Topics, actors, settled consumer groups; everything removed afterwards."""
    asyncio.run(platform.prepare_storage_and_topics(settings))
    deployment = platform.deploy(settings, sla_monitor=sla_monitor)
    try:
        platform.wait_until_consuming(deployment, timeout_s=90)
        yield deployment
    finally:
        deployment.stop(grace_s=5)


def demo_events(packs: PackRegistry, count: int, seed: int) -> list[EventEnvelope]:
    tenants = [packs.view(tenant_id) for tenant_id in sorted(packs.tenants)]
    return [
        ingestion_event(item["tenant_id"], item["exception"], packs=packs, now=utc_now(), source="test")
        for item in generate_stream(seed, tenants, count, start=utc_now())
    ]


def publish_events(settings: Settings, events: list[EventEnvelope]) -> None:
    sent = asyncio.run(publish(settings, events, total=len(events), progress=False))
    assert sent == len(events)


def wait_for_final(settings: Settings, expected: int, timeout_s: float) -> dict[str, int]:
    """Poll until `expected` exceptions are in a final state; returns the status counts."""
    deadline = time.monotonic() + timeout_s
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        rows = fetch(settings, "SELECT status, count(*) AS n FROM exceptions GROUP BY status")
        counts = {row["status"]: row["n"] for row in rows}
        if sum(counts.get(status, 0) for status in FINAL_STATUSES) >= expected:
            # Feedback is the last hop: wait for it too, for every exception whose story has ended.
            ended = sum(counts.get(status, 0) for status in ENDED_STATUSES)
            recorded = fetch(settings, "SELECT count(*) AS n FROM feedback")[0]["n"]
            if recorded >= ended:
                return counts
        time.sleep(1.0)
    raise AssertionError(f"not every exception reached a final state within {timeout_s}s: {counts}")


@dataclass(frozen=True)
class Expected:
    exception_type: str
    severity: str
    playbook_id: str | None
    approval_required: bool
    escalated: bool

    @property
    def waits_for_approval(self) -> bool:
        return self.approval_required and not self.escalated


def expected_outcome(packs: PackRegistry, event: EventEnvelope) -> Expected:
    """What the pack's rules say, computed in-process with the same pure functions the stages use."""
    tenant = packs.view(event.tenant_id)
    normalised = normalise_exception(event, tenant.domain.guardrails.pii_fields)
    decision = RulesBackend().classify_one(
        TriageInput(tenant, event.exception_id, normalised["type_hint"], normalised["description"], normalised["attributes"])
    )
    severity, _ = assess_severity(tenant, decision.exception_type, normalised["attributes"], normalised["description"])
    policy = evaluate_policy(
        tenant, decision.exception_type, severity, decision.confidence, normalised["attributes"], normalised["description"]
    )
    gated = False
    if policy.playbook_id:
        playbook = tenant.playbook(policy.playbook_id)
        gated = playbook is not None and any(needs_approval_gate(step) for step in playbook.steps)
    return Expected(
        decision.exception_type, severity.value, policy.playbook_id, policy.approval_required and gated, policy.escalated
    )


def wait_until(condition: Any, timeout_s: float, interval_s: float = 0.2) -> None:
    """Poll `condition()` until it is true; fail the test after `timeout_s` seconds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s}s")


def load_packs_for(settings: Settings) -> PackRegistry:
    return load_packs(settings.pack_dir)
