"""The gauges /metrics adds to the database counters, their Ray mirror, and the trace assembly."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.metrics import MetricsSnapshot, render_prometheus
from pipeline.queries import build_trace
from serve.ray_metrics import RayMetricsExporter, ray_series
from serve.routers.metrics import dlq_gauges, runtime_gauges

HEALTH = {
    "status": "ok",
    "stages": {
        "intake": {"group_id": "intake-workers", "in_flight": 4, "lag": {"t.exceptions[0]": 2, "t.exceptions[1]": 0},
                   "held_by_rate_limit": {"FIN_GLOBEX": 3, "HC_MERIDIAN": 1}},
        "triage": {"group_id": "triage-workers", "in_flight": 1, "lag": {"t.sentinai.triage[3]": 7, "garbage": 1}},
    },
}
SNAPSHOT = MetricsSnapshot(
    counters=[
        (("events_processed_total", "intake", "ExceptionIngested", "FIN_ACME", "completed", ""), 3),
        (("events_processed_total", "intake", "ExceptionIngested", "HC_MERIDIAN", "completed", ""), 2),
        (("failures_total", "tool", "ToolExecutionRequested", "FIN_ACME", "", "tool_unavailable"), 1),
        (("rate_limited_events_total", "intake", "ExceptionIngested", "FIN_GLOBEX", "", ""), 40),
    ],
    histogram=[("intake", "ExceptionIngested", 0.1, 4, 0.0), ("intake", "ExceptionIngested", math.inf, 1, 0.9)],
)


def test_runtime_gauges_come_from_the_supervisor_report() -> None:
    gauges = runtime_gauges(HEALTH)
    assert ("supervisor_up", 1.0) in [(name, value) for name, _, _, value in gauges]
    assert [(labels, value) for name, _, labels, value in gauges if name == "events_in_processing"] == [
        ({"worker_type": "intake"}, 4.0), ({"worker_type": "triage"}, 1.0)]
    assert [(labels, value) for name, _, labels, value in gauges if name == "consumer_lag"] == [
        ({"group_id": "intake-workers", "topic": "t.exceptions", "partition": "0"}, 2.0),
        ({"group_id": "intake-workers", "topic": "t.exceptions", "partition": "1"}, 0.0),
        ({"group_id": "triage-workers", "topic": "t.sentinai.triage", "partition": "3"}, 7.0),
    ]
    assert [(name, value) for name, _, _, value in runtime_gauges(None)] == [("supervisor_up", 0.0)]


def test_events_held_by_rate_limits_are_a_gauge_per_tenant_or_one_per_stage_without_tenant_labels() -> None:
    def held(gauges: list[Any]) -> list[tuple[dict[str, str], float]]:
        return [(labels, value) for name, _, labels, value in gauges if name == "rate_limited_events_held"]

    assert held(runtime_gauges(HEALTH)) == [({"worker_type": "intake", "tenant_id": "FIN_GLOBEX"}, 3.0),
                                            ({"worker_type": "intake", "tenant_id": "HC_MERIDIAN"}, 1.0)]
    assert held(runtime_gauges(HEALTH, tenant_labels=False)) == [({"worker_type": "intake"}, 4.0)]
    text = render_prometheus(SNAPSHOT, runtime_gauges(HEALTH))
    assert "# TYPE rate_limited_events_total counter" in text
    assert 'rate_limited_events_total{worker_type="intake",tenant_id="FIN_GLOBEX"} 40' in text
    assert 'rate_limited_events_held{worker_type="intake",tenant_id="FIN_GLOBEX"} 3.0' in text


def test_dlq_size_is_the_total_and_by_tenant_only_with_tenant_labels() -> None:
    rows = [("FIN_ACME", 2), (None, 1)]
    assert [(n, labels, v) for n, _, labels, v in dlq_gauges(rows, tenant_labels=True)] == [
        ("dlq_size", {}, 3.0), ("dlq_size_by_tenant", {"tenant_id": "FIN_ACME"}, 2.0),
        ("dlq_size_by_tenant", {"tenant_id": "unknown"}, 1.0)]
    assert [(n, v) for n, _, _, v in dlq_gauges(rows, tenant_labels=False)] == [("dlq_size", 3.0)]
    assert [(n, v) for n, _, _, v in dlq_gauges([], tenant_labels=True)] == [("dlq_size", 0.0)]


def test_the_prometheus_text_has_the_runbook_names() -> None:
    text = render_prometheus(SNAPSHOT, dlq_gauges([], tenant_labels=True) + runtime_gauges(HEALTH))
    assert "# TYPE dlq_size gauge\ndlq_size 0.0" in text
    assert 'consumer_lag{group_id="triage-workers",topic="t.sentinai.triage",partition="3"} 7.0' in text
    assert 'events_in_processing{worker_type="intake"} 4.0' in text
    assert 'processing_latency_seconds_bucket{worker_type="intake",event_type="ExceptionIngested",le="+Inf"} 5' in text


def test_ray_series_mirror_the_prometheus_figures() -> None:
    series = {(name, tuple(sorted(tags.items()))): value
              for name, _, _, tags, value in ray_series(SNAPSHOT, runtime_gauges(HEALTH), tenant_labels=True)}
    assert series[("sentinai_events_processed_total", (("event_type", "ExceptionIngested"), ("status", "completed"),
                                                        ("tenant_id", "FIN_ACME"), ("worker_type", "intake")))] == 3.0
    assert series[("sentinai_processing_latency_seconds_count", (("event_type", "ExceptionIngested"),
                                                                  ("worker_type", "intake")))] == 5.0
    assert series[("sentinai_processing_latency_seconds_sum", (("event_type", "ExceptionIngested"),
                                                                ("worker_type", "intake")))] == 0.9
    assert series[("sentinai_supervisor_up", ())] == 1.0
    without_tenants = ray_series(SNAPSHOT, [], tenant_labels=False)
    processed = [(tags, value) for name, _, _, tags, value in without_tenants if name == "sentinai_events_processed_total"]
    assert processed == [({"worker_type": "intake", "event_type": "ExceptionIngested", "status": "completed"}, 5.0)]


class FakeGauge:
    def __init__(self, name: str, description: str, tag_keys: tuple[str, ...]) -> None:
        self.name, self.tag_keys = name, tag_keys
        self.values: dict[tuple[tuple[str, str], ...], float] = {}

    def set(self, value: float, tags: dict[str, str] | None = None) -> None:
        assert set(tags or {}) == set(self.tag_keys)
        self.values[tuple(sorted((tags or {}).items()))] = value


def test_the_ray_exporter_makes_one_gauge_per_name_and_sets_totals() -> None:
    made: dict[str, FakeGauge] = {}

    def factory(name: str, description: str, tag_keys: tuple[str, ...]) -> FakeGauge:
        assert name not in made
        made[name] = FakeGauge(name, description, tag_keys)
        return made[name]

    exporter = RayMetricsExporter(tenant_labels=True, gauge_factory=factory)
    exporter(SNAPSHOT, runtime_gauges(HEALTH))
    exporter(SNAPSHOT, runtime_gauges(HEALTH))  # a second scrape reuses the gauges
    assert made["sentinai_failures_total"].values == {
        (("error_type", "tool_unavailable"), ("event_type", "ToolExecutionRequested"), ("tenant_id", "FIN_ACME"),
         ("worker_type", "tool")): 1.0}
    assert made["sentinai_consumer_lag"].tag_keys == ("group_id", "partition", "topic")


def _at(seconds: float) -> datetime:
    return datetime(2026, 11, 30, 8, 0, tzinfo=UTC) + timedelta(seconds=seconds)


def test_the_trace_joins_events_with_how_each_stage_handled_them() -> None:
    exception: dict[str, Any] = {"tenant_id": "FIN_ACME", "exception_id": "EXC-1", "status": "resolved",
                                 "severity": "HIGH"}
    events = [
        {"event_id": "e1", "event_type": "ExceptionIngested", "produced_by": "source", "event_timestamp": _at(0),
         "metadata": {}},
        {"event_id": "e2", "event_type": "ExceptionNormalized", "produced_by": "intake", "event_timestamp": _at(1),
         "metadata": {"caused_by": "e1"}},
    ]
    base = {"error_type": None, "error_message": None, "next_retry_at": None, "output_event_ids": [], "topic": "t",
            "partition": 0, "offset": 1, "last_attempt_at": _at(1)}
    processing = [
        {**base, "event_id": "e1", "worker_type": "intake", "status": "completed", "retry_count": 0, "duration_ms": 2.5,
         "completed_at": _at(0.5)},
        {**base, "event_id": "e2", "worker_type": "triage", "status": "completed", "retry_count": 2, "duration_ms": 4.0,
         "completed_at": _at(4)},
        {**base, "event_id": "lost", "worker_type": "policy", "status": "failed", "retry_count": 0, "duration_ms": None,
         "completed_at": None},
    ]
    trace = build_trace(exception, events, processing, [])
    assert [step["event_type"] for step in trace["events"]] == ["ExceptionIngested", "ExceptionNormalized"]
    assert trace["events"][1]["caused_by"] == "e1"
    assert [(h["worker_type"], h["latency_ms"], h["duration_ms"]) for h in trace["events"][1]["handled_by"]] == [
        ("triage", 3000.0, 4.0)]
    assert trace["events"][0]["handled_by"][0]["latency_ms"] == 500.0
    assert [row["worker_type"] for row in trace["unmatched_processing"]] == ["policy"]
    assert trace["retries"] == 2 and trace["stages"]["triage"]["retries"] == 2
    assert trace["stages"]["policy"]["failed"] == 1
    assert trace["state"]["status"] == "resolved" and trace["elapsed_ms"] == 4000.0
