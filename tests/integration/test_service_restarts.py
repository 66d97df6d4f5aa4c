"""PostgreSQL and the bundled broker restarted under a running platform."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from cluster.embedded import BundledBroker, EmbeddedPostgres, free_port
from pipeline.routing import all_topics
from pipeline.settings import Settings
from pipeline.storage.database import create_engine
from pipeline.storage.migrate import upgrade_to_head
from tests.conftest import make_settings
from tests.integration.helpers import (
    demo_events,
    fetch,
    load_packs_for,
    publish_events,
    running_platform,
    wait_for_final,
    wait_until,
)
from tests.integration.test_pipeline import _assert_effects_exactly_once

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_session")]


def test_postgres_restart_mid_run_loses_and_duplicates_nothing(broker: BundledBroker, postgres_dir: Path, tmp_path: Path) -> None:
    postgres = EmbeddedPostgres(postgres_dir)
    url = postgres.start()
    try:
        settings = make_settings(broker, url, tmp_path)
        asyncio.run(_migrate(settings))
        events = demo_events(load_packs_for(settings), count=300, seed=11)
        with running_platform(settings):
            publish_events(settings, events)
            wait_until(lambda: _processed(settings) >= 100, 60)
            postgres.stop()
            time.sleep(3)  # workers hit a dead database and back off
            postgres.start()
            wait_for_final(settings, expected=300, timeout_s=180)
        assert fetch(settings, "SELECT count(*) AS n FROM exceptions")[0]["n"] == 300
        assert fetch(settings, "SELECT count(*) AS n FROM dead_letter_queue")[0]["n"] == 0
        _assert_effects_exactly_once(settings, 300)
    finally:
        postgres.stop()


def test_bundled_broker_restart_recreates_topics_and_consumers_start_cleanly(database: str, tmp_path: Path) -> None:
    with BundledBroker(port=free_port(), log_path=tmp_path / "broker.log") as own_broker:
        settings = make_settings(own_broker, database, tmp_path)
        events = demo_events(load_packs_for(settings), count=200, seed=5)
        with running_platform(settings):
            publish_events(settings, events[:150])
            # Every exception reached intake (it is in PostgreSQL); most are still between stages.
            wait_until(lambda: _processed_by(settings, "intake") == 150, 60)

            own_broker.restart()  # memory store: every topic, message, group and offset is gone
            wait_until(lambda: set(all_topics(settings.kafka)) <= asyncio.run(_topics(settings)), 30)
            # What was between stages is re-published from event_log: nothing is lost.
            wait_for_final(settings, expected=150, timeout_s=120)

            publish_events(settings, events[150:])
            wait_for_final(settings, expected=200, timeout_s=120)

    assert fetch(settings, "SELECT count(*) AS n FROM exceptions")[0]["n"] == 200
    assert fetch(settings, "SELECT count(*) AS n FROM dead_letter_queue")[0]["n"] == 0
    _assert_effects_exactly_once(settings, 200)


async def _migrate(settings: Settings) -> None:
    assert settings.database.url is not None
    engine = create_engine(settings.database.url.get_secret_value(), settings.database)
    try:
        await upgrade_to_head(engine)
    finally:
        await engine.dispose()


async def _topics(settings: Settings) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


def _processed_by(settings: Settings, stage: str) -> int:
    return fetch(settings, "SELECT count(*) AS n FROM event_processing_log WHERE worker_type = $1", stage)[0]["n"]


def _processed(settings: Settings) -> int:
    return fetch(settings, "SELECT count(*) AS n FROM event_processing_log")[0]["n"]
