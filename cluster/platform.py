"""Start and stop the whole platform: services, schema, topics, and the Ray actors of every stage."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import ray

from actors.deployment import Deployment, deploy, wait_until_consuming
from cluster.embedded import BundledBroker, EmbeddedPostgres
from pipeline.events import utc_now
from pipeline.kafka import ensure_topics
from pipeline.packs import load_packs
from pipeline.routing import all_topics
from pipeline.settings import Settings
from pipeline.storage.database import create_engine
from pipeline.storage.migrate import upgrade_to_head
from pipeline.storage.tenants import sync_tenants

log = logging.getLogger(__name__)


@dataclass
class EmbeddedServices:
    """The bundled broker and embedded PostgreSQL, when the settings name no real ones."""

    broker: BundledBroker | None = None
    postgres: EmbeddedPostgres | None = None
    owns_postgres: bool = True

    @property
    def broker_is_fresh(self) -> bool:
        """The bundled broker was started empty now (not adopted from a killed run)."""
        return self.broker is not None and self.broker.fresh

    def stop(self) -> None:
        if self.broker is not None:
            self.broker.stop()
        if self.postgres is not None and self.owns_postgres:
            self.postgres.stop()


def resolve_services(settings: Settings, *, adopt_only: bool = False) -> tuple[Settings, EmbeddedServices]:
    """Start embedded services for what is not configured; return settings that name every address.

    `sentinai up` owns what it starts or adopts (a server left running by a killed `sentinai up`).
    With `adopt_only` (`sentinai migrate`, `sentinai worker`), a service some `sentinai up` already
    runs is used and left running; only PostgreSQL is started if nothing runs, and stopped again."""
    services = EmbeddedServices()
    data_dir = Path(settings.data_dir).resolve()
    kafka, database = settings.kafka, settings.database
    try:
        if kafka.bootstrap_servers is None and adopt_only:
            kafka = kafka.model_copy(update={"bootstrap_servers": f"127.0.0.1:{kafka.bundled_port}"})
        if kafka.bootstrap_servers is None:
            services.broker = BundledBroker(port=kafka.bundled_port, log_path=data_dir / "broker.log")
            bootstrap = services.broker.start()
            kafka = kafka.model_copy(update={"bootstrap_servers": bootstrap})
            if services.broker.fresh:
                log.info("bundled Kafka-compatible broker on %s (in-memory: data is lost when it stops)", bootstrap)
            else:
                log.warning("adopted the bundled broker left running on %s by a previous run", bootstrap)
        if database.url is None:
            services.postgres = EmbeddedPostgres(data_dir / "postgres")
            services.owns_postgres = not (adopt_only and services.postgres.is_running())
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
        return
    with _own_process_group():
        ray.init(
            namespace=settings.ray.namespace,
            num_cpus=settings.ray.num_cpus,
            include_dashboard=settings.ray.include_dashboard,
            object_store_memory=settings.ray.object_store_memory_mb * 1024 * 1024,
        )


@contextmanager
def _own_process_group() -> Iterator[None]:
    """Start the local Ray's processes (GCS, raylet, workers) outside our process group.

    Ctrl-C in a terminal, `timeout` and some supervisors signal the whole process group: the local
    Ray would die with the signal, before `sentinai up` could drain its consumers. Its processes are
    born in a group of their own instead; we return to the caller's group, so the signal still
    reaches `sentinai up`, which then stops the platform and Ray in order. Where the group cannot be
    changed (a session leader), Ray starts in ours.
    """
    try:
        original = os.getpgrp()
        os.setpgid(0, 0)
    except OSError:
        yield
        return
    try:
        yield
    finally:
        with suppress(OSError):
            os.setpgid(0, original)


__all__ = [
    "Deployment",
    "EmbeddedServices",
    "connect_ray",
    "deploy",
    "prepare_storage_and_topics",
    "resolve_services",
    "wait_until_consuming",
]
