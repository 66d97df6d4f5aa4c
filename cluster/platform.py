"""Start and stop the whole platform: services, schema, topics, and the Ray actors of every stage."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from actors.consumer import StageConsumerActor
from actors.naming import SLA_MONITOR_NAME, consumer_actor_name, pool_actor_name
from actors.sla_monitor import SlaMonitorActor
from actors.stage_pool import StagePoolActor
from cluster.embedded import BundledBroker, EmbeddedPostgres
from pipeline.events import utc_now
from pipeline.kafka import ensure_topics
from pipeline.packs import load_packs
from pipeline.routing import all_topics
from pipeline.settings import STAGE_NAMES, Settings
from pipeline.storage.database import create_engine
from pipeline.storage.migrate import upgrade_to_head
from pipeline.storage.tenants import sync_tenants

log = logging.getLogger(__name__)


@dataclass
class EmbeddedServices:
    """The bundled broker and embedded PostgreSQL, when the settings name no real ones."""

    broker: BundledBroker | None = None
    postgres: EmbeddedPostgres | None = None

    def stop(self) -> None:
        if self.broker is not None:
            self.broker.stop()
        if self.postgres is not None:
            self.postgres.stop()


def resolve_services(settings: Settings) -> tuple[Settings, EmbeddedServices]:
    """Start embedded services for what is not configured; return settings that name every address."""
    services = EmbeddedServices()
    data_dir = Path(settings.data_dir).resolve()
    kafka, database = settings.kafka, settings.database
    try:
        if kafka.bootstrap_servers is None:
            services.broker = BundledBroker(port=kafka.bundled_port, log_path=data_dir / "broker.log")
            bootstrap = services.broker.start()
            kafka = kafka.model_copy(update={"bootstrap_servers": bootstrap})
            log.info("bundled Kafka-compatible broker on %s (in-memory: data is lost when it stops)", bootstrap)
        if database.url is None:
            services.postgres = EmbeddedPostgres(data_dir / "postgres")
            url = services.postgres.start()
            from pydantic import SecretStr

            database = database.model_copy(update={"url": SecretStr(url)})
            log.info("embedded PostgreSQL in %s", data_dir / "postgres")
    except BaseException:
        services.stop()
        raise
    return settings.model_copy(update={"kafka": kafka, "database": database}), services


async def prepare_storage_and_topics(settings: Settings) -> None:
    """Migrations, tenant rows and topics: idempotent, run by every `sentinai up`."""
    assert settings.database.url is not None and settings.kafka.bootstrap_servers is not None
    engine = create_engine(settings.database.url.get_secret_value(), settings.database)
    try:
        await upgrade_to_head(engine)
        packs = load_packs(settings.pack_dir)
        await sync_tenants(engine, packs, utc_now())
    finally:
        await engine.dispose()
    await ensure_topics(settings.kafka, settings.kafka.bootstrap_servers, all_topics(settings.kafka))


def connect_ray(settings: Settings) -> None:
    if ray.is_initialized():
        return
    if settings.ray.address:
        ray.init(address=settings.ray.address, namespace=settings.ray.namespace)
    else:
        ray.init(
            namespace=settings.ray.namespace,
            num_cpus=settings.ray.num_cpus,
            include_dashboard=settings.ray.include_dashboard,
            object_store_memory=settings.ray.object_store_memory_mb * 1024 * 1024,
        )


@dataclass
class StageDeployment:
    pools: list[Any] = field(default_factory=list)
    consumers: list[Any] = field(default_factory=list)


@dataclass
class Deployment:
    """Handles of every actor `deploy` started."""

    settings: Settings
    stages: dict[str, StageDeployment] = field(default_factory=dict)
    sla_monitor: Any = None

    def consumer_handles(self) -> list[tuple[str, int, Any]]:
        return [(stage, i, handle) for stage, d in self.stages.items() for i, handle in enumerate(d.consumers)]

    def pool_handles(self) -> list[tuple[str, int, Any]]:
        return [(stage, i, handle) for stage, d in self.stages.items() for i, handle in enumerate(d.pools)]

    def stats(self, timeout_s: float = 10) -> dict[str, list[dict[str, Any]]]:
        result: dict[str, list[dict[str, Any]]] = {}
        for stage, index, handle in self.consumer_handles():
            try:
                result.setdefault(stage, []).append(ray.get(handle.stats.remote(), timeout=timeout_s))
            except Exception as error:  # noqa: BLE001 - a dead or restarting actor is reported, not fatal
                result.setdefault(stage, []).append({"index": index, "error": str(error)})
        return result

    def stop(self, grace_s: float) -> None:
        """Graceful: consumers finish in-flight work and commit, then every actor is removed."""
        stops = [handle.stop.remote(grace_s) for _, _, handle in self.consumer_handles()]
        try:
            ray.get(stops, timeout=grace_s + 15)
        except Exception as error:  # noqa: BLE001 - what did not finish is redelivered after restart
            log.warning("some consumers did not stop cleanly (their work will be redelivered): %s", error)
        if self.sla_monitor is not None:
            try:
                ray.get(self.sla_monitor.stop.remote(), timeout=10)
            except Exception:  # noqa: BLE001
                pass
        for _, _, handle in [*self.consumer_handles(), *self.pool_handles()]:
            ray.kill(handle, no_restart=True)
        if self.sla_monitor is not None:
            ray.kill(self.sla_monitor, no_restart=True)


def deploy(settings: Settings, stages: tuple[str, ...] = STAGE_NAMES, *, sla_monitor: bool = True) -> Deployment:
    """Start the pool and consumer actors of `stages` (and the SLA monitor) on the connected Ray."""
    namespace = settings.ray.namespace
    deployment = Deployment(settings=settings)
    for stage in stages:
        options = settings.stages.for_stage(stage)
        pools = [
            StagePoolActor.options(
                name=pool_actor_name(stage, i), namespace=namespace, num_cpus=options.actor_num_cpus,
                num_gpus=options.actor_num_gpus, get_if_exists=True,
            ).remote(settings, stage, i)
            for i in range(options.concurrency)
        ]
        deployment.stages[stage] = StageDeployment(pools=pools)
    # Consumers look their pools up by name, so every pool must be alive before any consumer starts.
    ray.get([pool.ping.remote() for _, _, pool in deployment.pool_handles()])
    for stage in stages:
        options = settings.stages.for_stage(stage)
        deployment.stages[stage].consumers = [
            StageConsumerActor.options(
                name=consumer_actor_name(stage, i), namespace=namespace, num_cpus=options.actor_num_cpus,
                get_if_exists=True,
            ).remote(settings, stage, i, namespace)
            for i in range(options.consumers)
        ]
    ray.get([consumer.ping.remote() for _, _, consumer in deployment.consumer_handles()])
    if sla_monitor:
        deployment.sla_monitor = SlaMonitorActor.options(
            name=SLA_MONITOR_NAME, namespace=namespace, num_cpus=0.05, get_if_exists=True
        ).remote(settings)
        ray.get(deployment.sla_monitor.stats.remote())
    return deployment


def wait_until_consuming(deployment: Deployment, timeout_s: float = 60) -> None:
    """Block until each stage's group owns every partition of its topic (the group has settled)."""
    deadline = time.monotonic() + timeout_s
    partitions = deployment.settings.kafka.partitions
    while time.monotonic() < deadline:
        stats = deployment.stats()
        if all(sum(len(entry.get("assigned", [])) for entry in entries) == partitions for entries in stats.values()):
            return
        time.sleep(0.5)
    raise TimeoutError(f"consumers did not get partitions within {timeout_s}s")


def run_async(coroutine: Any) -> Any:
    return asyncio.run(coroutine)
