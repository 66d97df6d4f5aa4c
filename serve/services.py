"""What the API's routes need from the outside world, behind one small object.

`PlatformServices` is the real one: a database engine and a Kafka producer owned by the process
(created lazily on first use, so a replica starts even while PostgreSQL or Kafka is down), the
tenant registry refreshed from the `tenants` table, and two hooks the Ray layer plugs in (the
supervisor's health report and the Ray metrics export). Unit tests pass a fake with the same methods.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from pipeline.errors import SentinaiError
from pipeline.kafka import classify_kafka_error, make_producer
from pipeline.metrics import MetricsSnapshot
from pipeline.packs import PackRegistry, load_packs
from pipeline.records import OutboundRecord
from pipeline.settings import Settings
from pipeline.storage import api_keys
from pipeline.storage.api_keys import ApiKey
from pipeline.storage.database import create_engine
from pipeline.storage.tenants import refresh_tenants

log = logging.getLogger(__name__)

Gauge = tuple[str, str, dict[str, str], float]
"""(name, help, labels, value), as `pipeline.metrics.render_prometheus` takes them."""

_TENANT_REFRESH_INTERVAL_S = 5.0
_TENANT_FORCED_REFRESH_MIN_S = 1.0


class ApiServices(Protocol):
    """Everything the routes call that is not pure computation."""

    settings: Settings

    async def engine(self) -> AsyncEngine: ...

    async def publish(self, records: list[OutboundRecord]) -> None:
        """Produce with acks=all; returns once every record is acknowledged. Raises KafkaUnavailableError."""
        ...

    async def supervisor_health(self, timeout_s: float) -> dict[str, Any] | None:
        """The supervisor's `health()` report, or None when it is unreachable."""
        ...

    async def packs(self, *, refresh: bool = False) -> PackRegistry: ...

    async def authenticate(self, secret: str) -> ApiKey | None: ...

    def export_metrics(self, snapshot: MetricsSnapshot, gauges: list[Gauge]) -> None: ...

    async def close(self) -> None: ...


class PlatformServices:
    """The real services of one API process (one Serve replica)."""

    def __init__(
        self,
        settings: Settings,
        *,
        supervisor_health: Callable[[float], Awaitable[dict[str, Any] | None]] | None = None,
        metrics_exporter: Callable[[MetricsSnapshot, list[Gauge]], None] | None = None,
        client_id: str = "sentinai-api",
    ) -> None:
        self.settings = settings
        self._supervisor_health = supervisor_health
        self._metrics_exporter = metrics_exporter
        self._client_id = client_id
        self._engine: AsyncEngine | None = None
        self._producer: Any = None
        self._producer_lock = asyncio.Lock()
        self._packs: PackRegistry | None = None
        self._packs_refreshed_at = -float("inf")

    async def engine(self) -> AsyncEngine:
        if self._engine is None:
            if self.settings.database.url is None:
                raise RuntimeError("settings.database.url must be resolved before the API starts")
            self._engine = create_engine(self.settings.database.url.get_secret_value(), self.settings.database)
        return self._engine

    async def publish(self, records: list[OutboundRecord]) -> None:
        if not records:
            return
        producer = await self._started_producer()
        try:
            deliveries = [
                await producer.send(record.topic, record.value, key=record.key, headers=list(record.headers))
                for record in records
            ]
            await asyncio.gather(*deliveries)
        except SentinaiError:
            raise
        except Exception as error:
            raise classify_kafka_error(error) from error

    async def _started_producer(self) -> Any:
        async with self._producer_lock:
            if self._producer is None:
                bootstrap = self.settings.kafka.bootstrap_servers
                if not bootstrap:
                    raise RuntimeError("settings.kafka.bootstrap_servers must be resolved before the API starts")
                producer = make_producer(self.settings.kafka, bootstrap, self._client_id)
                try:
                    await producer.start()
                except Exception as error:
                    await producer.stop()
                    raise classify_kafka_error(error) from error
                self._producer = producer
            return self._producer

    async def supervisor_health(self, timeout_s: float) -> dict[str, Any] | None:
        if self._supervisor_health is None:
            return None
        return await self._supervisor_health(timeout_s)

    async def packs(self, *, refresh: bool = False) -> PackRegistry:
        """The bundled and SENTINAI_PACK_DIR packs plus the tenants in the database (refreshed every few
        seconds, or now when `refresh` asks and the last refresh is over a second old)."""
        if self._packs is None:
            self._packs = load_packs(self.settings.pack_dir)
        since = time.monotonic() - self._packs_refreshed_at
        if since >= _TENANT_REFRESH_INTERVAL_S or (refresh and since >= _TENANT_FORCED_REFRESH_MIN_S):
            self._packs_refreshed_at = time.monotonic()
            await refresh_tenants(await self.engine(), self._packs)
        return self._packs

    async def authenticate(self, secret: str) -> ApiKey | None:
        # One indexed lookup per request, no cache: a revoked key stops working at once.
        return await api_keys.authenticate(await self.engine(), secret)

    def export_metrics(self, snapshot: MetricsSnapshot, gauges: list[Gauge]) -> None:
        if self._metrics_exporter is None:
            return
        try:
            self._metrics_exporter(snapshot, gauges)
        except Exception:  # noqa: BLE001 - the Prometheus answer must not fail because the Ray export did
            log.warning("exporting metrics to Ray failed", exc_info=True)

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
