"""Run the Alembic migrations programmatically (`sentinai migrate`, and `sentinai up` at start)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would choke on a '%' in a password.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def upgrade_to_head(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision. Safe to run concurrently: Alembic takes no lock,
    so we serialise with a PostgreSQL advisory lock held for the whole upgrade."""

    def _upgrade(connection) -> None:  # type: ignore[no-untyped-def]
        config = alembic_config(str(engine.url))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

    async with engine.connect() as connection:
        await connection.exec_driver_sql("SELECT pg_advisory_lock(727210001)")
        try:
            await connection.run_sync(_upgrade)
            await connection.commit()
        finally:
            await connection.exec_driver_sql("SELECT pg_advisory_unlock(727210001)")
            await connection.commit()


def upgrade_to_head_sync(engine: AsyncEngine) -> None:
    asyncio.run(upgrade_to_head(engine))
