"""The runbook's Prometheus metrics, counted where the work is committed.

Each batch adds its counts to `metric_counters` and `latency_histogram` inside its own transaction,
so the totals are exact sums over every actor on every node, survive any actor's restart, and a
retried batch is never counted twice. `render_prometheus` turns them (plus live gauges such as DLQ
size, events in processing and consumer lag) into the text format.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from pipeline.storage import bulk, schema

LATENCY_BUCKETS_S: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, math.inf)

CounterKey = tuple[str, str, str, str, str, str]  # name, worker_type, event_type, tenant_id, status, error_type


@dataclass
class BatchMetrics:
    """Counts of one batch, flushed in the batch's transaction."""

    counters: dict[CounterKey, int] = field(default_factory=lambda: defaultdict(int))
    buckets: dict[tuple[str, str, float], int] = field(default_factory=lambda: defaultdict(int))
    sums: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))

    def event(self, worker_type: str, event_type: str, tenant_id: str, status: str, *, error_type: str | None = None,
              latency_s: float | None = None) -> None:
        self.counters[("events_processed_total", worker_type, event_type, tenant_id, status, "")] += 1
        if error_type is not None:
            self.counters[("failures_total", worker_type, event_type, tenant_id, "", error_type)] += 1
        if status == "retrying":
            self.counters[("retries_total", worker_type, event_type, tenant_id, "", "")] += 1
        if latency_s is not None:
            le = LATENCY_BUCKETS_S[bisect_left(LATENCY_BUCKETS_S, max(0.0, latency_s))]
            self.buckets[(worker_type, event_type, le)] += 1
            self.sums[(worker_type, event_type)] += max(0.0, latency_s)

    def rate_limited(self, worker_type: str, event_type: str, tenant_id: str) -> None:
        """An event its tenant's rate limit held back before this stage processed it."""
        self.counters[("rate_limited_events_total", worker_type, event_type, tenant_id, "", "")] += 1

    def flush(self, writes: bulk.WriteBatch) -> None:
        """Queue the batch's counts, to be sent with the batch's other writes."""
        # Sorted, so concurrent batches lock the shared counter rows in the same order (no deadlock).
        if self.counters:
            table = schema.metric_counters
            rows = [dict(zip(_COUNTER_COLUMNS, key, strict=True), value=value) for key, value in sorted(self.counters.items())]
            writes.insert_rows(table, rows, conflict=bulk.do_update(table, _COUNTER_COLUMNS, ("value",), increment=True))
        if self.buckets:
            merged: dict[tuple[str, str, float], list[float]] = defaultdict(lambda: [0, 0.0])
            for key, count in self.buckets.items():
                merged[key][0] += count
            for (worker_type, event_type), total in self.sums.items():
                merged[(worker_type, event_type, math.inf)][1] += total  # the sum rides on the +Inf row
            table = schema.latency_histogram
            rows = [{"worker_type": w, "event_type": e, "le": le, "count": int(c), "sum_seconds": total}
                    for (w, e, le), (c, total) in sorted(merged.items())]
            conflict = bulk.do_update(table, ("worker_type", "event_type", "le"), ("count", "sum_seconds"), increment=True)
            writes.insert_rows(table, rows, conflict=conflict)


_COUNTER_COLUMNS = ("name", "worker_type", "event_type", "tenant_id", "status", "error_type")


@dataclass(frozen=True)
class MetricsSnapshot:
    counters: list[tuple[CounterKey, int]]
    histogram: list[tuple[str, str, float, int, float]]  # worker_type, event_type, le, count, sum


async def read_metrics(connection: AsyncConnection) -> MetricsSnapshot:
    counters = schema.metric_counters
    rows = await connection.execute(select(counters))
    counter_values = [((r.name, r.worker_type, r.event_type, r.tenant_id, r.status, r.error_type), r.value) for r in rows]
    histogram = schema.latency_histogram
    rows = await connection.execute(select(histogram).order_by(histogram.c.worker_type, histogram.c.event_type, histogram.c.le))
    return MetricsSnapshot(counter_values, [(r.worker_type, r.event_type, r.le, r.count, r.sum_seconds) for r in rows])


_HELP = {
    "events_processed_total": "Events processed, by stage (worker_type), event type, tenant and outcome status.",
    "failures_total": "Failed processing attempts (retried or dead-lettered), by error type.",
    "retries_total": "Retries scheduled.",
    "rate_limited_events_total": "Events held back by their tenant's rate limit before the stage processed them (slowed, not failed).",
    "processing_latency_seconds": "Time from an event's creation to its processing being committed by a stage.",
}
COUNTER_LABELS = {
    "events_processed_total": ("worker_type", "event_type", "tenant_id", "status"),
    "failures_total": ("worker_type", "event_type", "tenant_id", "error_type"),
    "retries_total": ("worker_type", "event_type", "tenant_id"),
    "rate_limited_events_total": ("worker_type", "tenant_id"),
}


def render_prometheus(snapshot: MetricsSnapshot, gauges: list[tuple[str, str, dict[str, str], float]], *,
                      tenant_labels: bool = True) -> str:
    """Prometheus text format. `gauges`: (name, help, labels, value). Without tenant labels, counts
    are summed over tenants (for deployments with many tenants)."""
    lines: list[str] = []
    for name, labels in COUNTER_LABELS.items():
        shown = tuple(label for label in labels if tenant_labels or label != "tenant_id")
        totals: dict[tuple[str, ...], int] = defaultdict(int)
        for key, value in snapshot.counters:
            if key[0] != name:
                continue
            values = dict(zip(("worker_type", "event_type", "tenant_id", "status", "error_type"), key[1:], strict=True))
            totals[tuple(values[label] for label in shown)] += value
        lines += [f"# HELP {name} {_HELP[name]}", f"# TYPE {name} counter"]
        lines += [f"{name}{_labels(dict(zip(shown, key, strict=True)))} {value}" for key, value in sorted(totals.items())]
    lines += ["# HELP processing_latency_seconds " + _HELP["processing_latency_seconds"],
              "# TYPE processing_latency_seconds histogram"]
    series: dict[tuple[str, str], list[tuple[float, int, float]]] = defaultdict(list)
    for worker_type, event_type, le, count, total in snapshot.histogram:
        series[(worker_type, event_type)].append((le, count, total))
    for (worker_type, event_type), buckets in sorted(series.items()):
        by_le = {le: count for le, count, _ in buckets}
        cumulative = 0
        base = {"worker_type": worker_type, "event_type": event_type}
        for le in LATENCY_BUCKETS_S:
            cumulative += by_le.get(le, 0)
            bound = "+Inf" if math.isinf(le) else repr(le)
            lines.append(f"processing_latency_seconds_bucket{_labels({**base, 'le': bound})} {cumulative}")
        lines.append(f"processing_latency_seconds_sum{_labels(base)} {sum(total for _, _, total in buckets)}")
        lines.append(f"processing_latency_seconds_count{_labels(base)} {cumulative}")
    seen: set[str] = set()
    for name, help_text, labels, value in gauges:
        if name not in seen:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
            seen.add(name)
        lines.append(f"{name}{_labels(labels)} {value}")
    return "\n".join(lines) + "\n"


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    escaped = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + escaped + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
