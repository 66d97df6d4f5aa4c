"""`GET /metrics`: the runbook's Prometheus metrics.

Counters and the latency histogram come from the database (`metric_counters`, `latency_histogram`),
where every stage adds its counts inside each batch's own transaction: the figures are exact sums
over every actor on every node, whichever replica answers. Gauges are read at scrape time:

- `dlq_size`: `SELECT count(*) FROM dead_letter_queue` (one series, no labels, as the runbook's
  `dlq_size` query expects); `dlq_size_by_tenant{tenant_id}` beside it when tenant labels are on;
- `events_in_processing{worker_type}`: events the consumers have dispatched and not yet completed;
- `consumer_lag{group_id,topic,partition}`: per consumer group and partition;
- `rate_limited_events_held{worker_type,tenant_id}`: events a tenant's rate limit holds in the
  consumers right now (a series only while some are held);
- `supervisor_up`: 1 when the supervisor answered (the two gauges above come from its report).

The same figures go to Ray's own metrics (`ray_sentinai_*`) on each scrape, through the services.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse
from sqlalchemy import func, select

from pipeline.metrics import read_metrics, render_prometheus
from pipeline.storage import schema
from pipeline.storage.database import transaction
from serve.routers.health import parse_lag
from serve.services import ApiServices, Gauge

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SUPERVISOR_TIMEOUT_S = 5.0


def metrics_router(services: ApiServices, public: Any) -> APIRouter:
    router = APIRouter(tags=["metrics"], dependencies=[Depends(public)])
    tenant_labels = services.settings.serve.tenant_labels

    @router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus text format")
    async def metrics() -> PlainTextResponse:
        engine = await services.engine()
        dlq = schema.dead_letter_queue
        async with transaction(engine) as connection:
            snapshot = await read_metrics(connection)
            by_tenant = (await connection.execute(
                select(dlq.c.tenant_id, func.count()).group_by(dlq.c.tenant_id).order_by(dlq.c.tenant_id))).all()
        gauges = dlq_gauges([(tenant, int(count)) for tenant, count in by_tenant], tenant_labels=tenant_labels)
        gauges += runtime_gauges(await services.supervisor_health(SUPERVISOR_TIMEOUT_S), tenant_labels=tenant_labels)
        services.export_metrics(snapshot, gauges)
        body = render_prometheus(snapshot, gauges, tenant_labels=tenant_labels)
        return PlainTextResponse(body, media_type=PROMETHEUS_CONTENT_TYPE)

    return router


def dlq_gauges(by_tenant: list[tuple[str | None, int]], *, tenant_labels: bool) -> list[Gauge]:
    gauges: list[Gauge] = [("dlq_size", "Entries in the dead-letter queue (SELECT count(*) FROM dead_letter_queue).", {},
                            float(sum(count for _, count in by_tenant)))]
    if tenant_labels:
        gauges += [("dlq_size_by_tenant", "Entries in the dead-letter queue, by tenant ('unknown': undecodable records).",
                    {"tenant_id": tenant or "unknown"}, float(count)) for tenant, count in by_tenant]
    return gauges


def runtime_gauges(health: dict[str, Any] | None, *, tenant_labels: bool = True) -> list[Gauge]:
    """Gauges from the supervisor's health report; only `supervisor_up 0` when it did not answer."""
    gauges: list[Gauge] = [("supervisor_up", "1 when the supervisor actor answered this scrape.", {},
                            0.0 if health is None else 1.0)]
    if health is None:
        return gauges
    stages = health.get("stages", {})
    for stage, entry in sorted(stages.items()):
        gauges.append(("events_in_processing", "Events dispatched to a stage's pool and not completed yet.",
                       {"worker_type": stage}, float(entry.get("in_flight", 0))))
    help_held = "Events held back by their tenant's rate limit in the consumers now."
    for stage, entry in sorted(stages.items()):
        held_by_tenant = entry.get("held_by_rate_limit", {})
        if held_by_tenant and not tenant_labels:
            gauges.append(("rate_limited_events_held", help_held, {"worker_type": stage}, float(sum(held_by_tenant.values()))))
            continue
        for tenant, held in sorted(held_by_tenant.items()):
            gauges.append(("rate_limited_events_held", help_held, {"worker_type": stage, "tenant_id": tenant}, float(held)))
    for stage, entry in sorted(stages.items()):
        group_id = str(entry.get("group_id") or stage)
        for (topic, partition), lag in sorted(parse_lag(entry.get("lag", {})).items()):
            gauges.append(("consumer_lag", "Records on the partition not yet committed by the consumer group.",
                           {"group_id": group_id, "topic": topic, "partition": str(partition)}, float(lag)))
    return gauges
