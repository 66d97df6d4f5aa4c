"""Per-tenant rate limits on the real broker, PostgreSQL and a local Ray (DESIGN.md §5): a tenant over
its limit is slowed at intake, not failed, while another tenant's exceptions go straight through; a
BackpressureDetected event goes to the backpressure topic and `rate_limited_events_total` counts the
held events."""

from __future__ import annotations

import asyncio
import json

import pytest

from pipeline.demo_traffic import generate_stream
from pipeline.events import EventType, utc_now
from pipeline.ingest import ingestion_event
from pipeline.packs.models import RateLimit
from pipeline.routing import topics_for
from pipeline.settings import RateLimitSettings, Settings
from pipeline.storage.database import create_engine
from pipeline.storage.tenants import register_tenant
from tests.integration.helpers import (
    fetch,
    load_packs_for,
    publish_events,
    read_topic,
    running_platform,
    wait_for_final,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_session")]

SLOW_RATE = 10.0
SLOW_BURST = 10
PER_TENANT = 50


async def _register_slow_tenant(settings: Settings) -> None:
    packs = load_packs_for(settings)
    slow = packs.tenants["FIN_ACME"].model_copy(update={
        "tenant_id": "FIN_SLOW", "name": "Slow Capital", "rate_limit": RateLimit(events_per_s=SLOW_RATE, burst=SLOW_BURST)})
    assert settings.database.url is not None
    engine = create_engine(settings.database.url.get_secret_value(), settings.database)
    try:
        await register_tenant(engine, packs, slow, utc_now())
    finally:
        await engine.dispose()


def test_a_tenant_over_its_rate_limit_is_slowed_not_failed_and_the_other_tenant_is_not(settings: Settings) -> None:
    settings = settings.model_copy(update={"rate_limits": RateLimitSettings(refresh_interval_s=1.0)})
    asyncio.run(_register_slow_tenant(settings))
    with running_platform(settings):
        packs = load_packs_for(settings)  # the YAML packs were synced at start; FIN_SLOW stays in the table
        packs.tenants["FIN_SLOW"] = packs.tenants["FIN_ACME"].model_copy(update={"tenant_id": "FIN_SLOW"})
        stream = generate_stream(20261130, [packs.view("FIN_ACME")], 2 * PER_TENANT)  # FIN_SLOW is FIN_ACME's twin
        events = [ingestion_event("FIN_SLOW" if index < PER_TENANT else "FIN_ACME", item["exception"], packs=packs,
                                  now=utc_now(), source="test") for index, item in enumerate(stream)]
        publish_events(settings, events)  # all at once: five times FIN_SLOW's burst
        wait_for_final(settings, expected=2 * PER_TENANT, timeout_s=180)
        reports = asyncio.run(read_topic(settings.kafka.bootstrap_servers or "",
                                         topics_for(settings.kafka, EventType.BACKPRESSURE_DETECTED)[0], expected=1))

    spans = {row["tenant_id"]: row for row in fetch(settings, """
        SELECT tenant_id, count(*) AS n, extract(epoch FROM max(last_attempt_at) - min(last_attempt_at)) AS span_s
        FROM event_processing_log WHERE worker_type = 'intake' AND status = 'completed' GROUP BY tenant_id""")}
    assert {tenant: row["n"] for tenant, row in spans.items()} == {"FIN_SLOW": PER_TENANT, "FIN_ACME": PER_TENANT}
    # FIN_SLOW: a burst of 10, then 10 a second: its other 40 take about 4 s at intake.
    assert spans["FIN_SLOW"]["span_s"] >= 0.75 * (PER_TENANT - SLOW_BURST) / SLOW_RATE, spans
    assert spans["FIN_ACME"]["span_s"] < spans["FIN_SLOW"]["span_s"], spans
    slow_last, acme_last = (fetch(settings, "SELECT max(last_attempt_at) AS at FROM event_processing_log "
                                  "WHERE worker_type = 'intake' AND tenant_id = $1", tenant)[0]["at"]
                            for tenant in ("FIN_SLOW", "FIN_ACME"))
    assert acme_last < slow_last

    # Slowed, not failed: nothing dead-lettered, nothing retried, every exception final (waited above).
    assert fetch(settings, "SELECT count(*) AS n FROM dead_letter_queue")[0]["n"] == 0
    assert fetch(settings, "SELECT count(*) AS n FROM event_processing_log WHERE status <> 'completed'")[0]["n"] == 0
    held = {row["tenant_id"]: row["value"] for row in fetch(settings, """
        SELECT tenant_id, sum(value) AS value FROM metric_counters
        WHERE name = 'rate_limited_events_total' AND worker_type = 'intake' GROUP BY tenant_id""")}
    assert set(held) == {"FIN_SLOW"} and PER_TENANT - SLOW_BURST - 15 <= held["FIN_SLOW"] <= PER_TENANT - SLOW_BURST, held

    event = json.loads(reports[0].value)
    assert (event["event_type"], event["tenant_id"]) == ("BackpressureDetected", "FIN_SLOW")
    assert (event["payload"]["events_per_s"], event["payload"]["burst"]) == (SLOW_RATE, SLOW_BURST)
    assert [json.loads(record.value)["tenant_id"] for record in reports] == ["FIN_SLOW"] * len(reports)
