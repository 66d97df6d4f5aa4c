"""The /metrics figures, also as Ray metrics, so the Ray dashboard (and a Prometheus scraping Ray's
metrics export port) shows the same numbers.

On each scrape of /metrics the replica sets one Ray Gauge per series to the value it just read from
the database (counters are totals, so a Gauge set to the total is exact; a Ray Counter could not be
set). Names get the `sentinai_` prefix here and Ray adds `ray_`: `ray_sentinai_events_processed_total`.
Ray keeps one series per worker process (`WorkerId` label); with several replicas each exports the
same totals, so aggregate with `max without (WorkerId, ...)`, never `sum`. Ray exports values ~10 s
after they are set, and only once /metrics has been scraped.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from pipeline.metrics import COUNTER_LABELS, MetricsSnapshot
from serve.services import Gauge

PREFIX = "sentinai_"
_KEY_FIELDS = ("worker_type", "event_type", "tenant_id", "status", "error_type")

Series = tuple[str, str, tuple[str, ...], dict[str, str], float]
"""(name, description, tag keys, tags, value)."""


def ray_series(snapshot: MetricsSnapshot, gauges: list[Gauge], *, tenant_labels: bool) -> list[Series]:
    """Every figure of /metrics as (prefixed) gauge series, tenant labels dropped when turned off."""
    series: list[Series] = []
    for name, labels in COUNTER_LABELS.items():
        keys = tuple(label for label in labels if tenant_labels or label != "tenant_id")
        totals: dict[tuple[str, ...], int] = defaultdict(int)
        for key, value in snapshot.counters:
            if key[0] == name:
                values = dict(zip(_KEY_FIELDS, key[1:], strict=True))
                totals[tuple(values[label] for label in keys)] += value
        series += [(PREFIX + name, f"{name} (from the database counters)", keys, dict(zip(keys, tags, strict=True)),
                    float(value)) for tags, value in sorted(totals.items())]
    per_series: dict[tuple[str, str], list[tuple[float, int, float]]] = defaultdict(list)
    for worker_type, event_type, le, count, total in snapshot.histogram:
        per_series[(worker_type, event_type)].append((le, count, total))
    base_keys = ("worker_type", "event_type")
    for (worker_type, event_type), buckets in sorted(per_series.items()):
        base = {"worker_type": worker_type, "event_type": event_type}
        cumulative = 0
        for le, count, _ in sorted(buckets):
            cumulative += count
            bound = "+Inf" if math.isinf(le) else repr(le)
            series.append((PREFIX + "processing_latency_seconds_bucket", "processing latency histogram buckets",
                           (*base_keys, "le"), {**base, "le": bound}, float(cumulative)))
        series.append((PREFIX + "processing_latency_seconds_count", "processing latency observations", base_keys, base,
                       float(cumulative)))
        series.append((PREFIX + "processing_latency_seconds_sum", "processing latency sum, seconds", base_keys, base,
                       sum(total for _, _, total in buckets)))
    for name, help_text, labels, value in gauges:
        series.append((PREFIX + name, help_text, tuple(sorted(labels)), dict(labels), float(value)))
    return series


class RayMetricsExporter:
    """Sets `ray.util.metrics.Gauge`s (or what `gauge_factory` makes) from a scrape's figures."""

    def __init__(self, *, tenant_labels: bool, gauge_factory: Callable[[str, str, tuple[str, ...]], Any] | None = None) -> None:
        self.tenant_labels = tenant_labels
        self._factory = gauge_factory or _ray_gauge
        self._gauges: dict[tuple[str, tuple[str, ...]], Any] = {}

    def __call__(self, snapshot: MetricsSnapshot, gauges: list[Gauge]) -> None:
        for name, description, tag_keys, tags, value in ray_series(snapshot, gauges, tenant_labels=self.tenant_labels):
            gauge = self._gauges.get((name, tag_keys))
            if gauge is None:
                gauge = self._gauges[(name, tag_keys)] = self._factory(name, description, tag_keys)
            gauge.set(value, tags=tags or None)


def _ray_gauge(name: str, description: str, tag_keys: tuple[str, ...]) -> Any:
    from ray.util.metrics import Gauge as RayGauge

    return RayGauge(name, description=description, tag_keys=tag_keys)
