"""Real services for the integration and e2e tests: the bundled broker, the machine's PostgreSQL,
one local Ray. Fixtures start a service only when a test asks for it; unit tests ask for none.

Each test gets its own topics (a uuid prefix), consumer groups, Ray namespace and database (cloned
from a migrated template), so tests never see each other's data. A service that does not start fails
the run with its log; nothing is skipped.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from pydantic import SecretStr

from cluster.embedded import BundledBroker, free_port
from pipeline.settings import (
    STAGE_NAMES,
    KafkaSettings,
    RaySettings,
    ServeSettings,
    Settings,
    SlaSettings,
    StageSettings,
    StagesSettings,
    TriageSettings,
)

# The machine's PostgreSQL (CI starts it before the tests); override with SENTINAI_TEST_POSTGRES.
ADMIN_DSN = os.environ.get("SENTINAI_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
# One per test session: concurrent sessions (a developer and CI on one machine) must not share it.
TEMPLATE_DB = f"sentinai_test_template_{os.getpid()}"


def _asyncpg_dsn(database: str) -> str:
    return ADMIN_DSN.rsplit("/", 1)[0] + f"/{database}"


def sqlalchemy_url(database: str) -> str:
    return _asyncpg_dsn(database).replace("postgresql://", "postgresql+asyncpg://", 1)


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(ADMIN_DSN)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture
def postgres_dir() -> Iterator[Path]:
    """A directory dedicated to one embedded PostgreSQL, outside pytest's private tmp tree: as root
    the server makes its parents world-readable, and a concurrent pytest session would make pytest's
    own tree private again under a running server."""
    path = Path(tempfile.mkdtemp(prefix="sentinai-test-pg-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path / "pg"
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BundledBroker]:
    log_path = tmp_path_factory.mktemp("broker") / "broker.log"
    with BundledBroker(port=free_port(), log_path=log_path) as running:
        yield running


@pytest.fixture(scope="session")
def template_database() -> Iterator[str]:
    """A database migrated to head, cloned for each test (CREATE DATABASE ... TEMPLATE)."""
    from pipeline.settings import DatabaseSettings
    from pipeline.storage.database import create_engine
    from pipeline.storage.migrate import upgrade_to_head

    async def build() -> None:
        await _admin(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
        await _admin(f'CREATE DATABASE "{TEMPLATE_DB}"')
        engine = create_engine(sqlalchemy_url(TEMPLATE_DB), DatabaseSettings())
        try:
            await upgrade_to_head(engine)
        finally:
            await engine.dispose()

    asyncio.run(build())
    yield TEMPLATE_DB
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)'))


@pytest.fixture
def database(template_database: str) -> Iterator[str]:
    """A fresh, migrated database for one test; yields its SQLAlchemy URL."""
    name = f"sentinai_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"'))
    yield sqlalchemy_url(name)
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(
        num_cpus=4,  # oversubscribed on 2 cores on purpose: stage actors mostly wait on I/O
        include_dashboard=False,
        object_store_memory=256 * 1024 * 1024,
        namespace="sentinai-tests",
        log_to_driver=False,
        runtime_env={"env_vars": {"RAY_AUTH_MODE": os.environ["RAY_AUTH_MODE"]}},
    )
    try:
        yield
    finally:
        ray.shutdown()


def make_settings(broker: BundledBroker, database_url: str, tmp_path: Path, **stage_overrides: StageSettings) -> Settings:
    """Settings isolated for one test: own topics, groups, namespace and database."""
    run = uuid.uuid4().hex[:8]
    stages = {
        stage: stage_overrides.get(stage, StageSettings(group_id=f"t{run}-{stage}-workers", actor_num_cpus=0.1))
        for stage in STAGE_NAMES
    }
    return Settings(
        data_dir=tmp_path,
        kafka=KafkaSettings(
            bootstrap_servers=broker.bootstrap_servers,
            topic_prefix=f"t{run}.",
            partitions=4,
            session_timeout_ms=3000,
            heartbeat_interval_ms=500,
        ),
        database={"url": SecretStr(database_url), "pool_size": 2},  # type: ignore[arg-type]
        stages=StagesSettings(**stages),
        sla=SlaSettings(interval_s=0.5),
        ray=RaySettings(namespace=f"t{run}", include_dashboard=False),
        # The rules backend keeps pipeline tests independent of the model pool, which
        # tests/integration/test_triage_pool.py exercises on its own.
        triage=TriageSettings(backend="rules"),
        serve=ServeSettings(port=free_port()),
    )


@pytest.fixture
def settings(broker: BundledBroker, database: str, tmp_path: Path) -> Settings:
    return make_settings(broker, database, tmp_path)
