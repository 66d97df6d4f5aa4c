"""The async engine, and the one place where PostgreSQL errors become ours.

Errors are classified by SQLSTATE class (never by message text): 08 connection, 40 transaction
rollback (serialisation, deadlock), 53 insufficient resources, 57 operator intervention (shutdown,
statement timeout) are transient; 22 data and 23 integrity are permanent; 28 auth and 42 syntax or
missing objects are fatal configuration problems.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import pydantic_core
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from pipeline.errors import ConfigurationError, DatabaseError, DatabaseUnavailableError, SentinaiError
from pipeline.settings import DatabaseSettings

_TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57"})
_FATAL_SQLSTATE_CLASSES = frozenset({"28", "3D", "42"})

T = TypeVar("T")


def create_engine(url: str, settings: DatabaseSettings) -> AsyncEngine:
    """An asyncpg-backed engine. `url` is `postgresql+asyncpg://...` (embedded: a unix socket URL).

    No pre-ping: a round trip on every checkout costs more than it saves. A connection that died in
    the pool fails its batch with a retryable `DatabaseUnavailableError`, the pool discards it, and
    the retry gets a fresh one."""
    return create_async_engine(
        url,
        pool_size=settings.pool_size,
        max_overflow=settings.pool_size,
        pool_recycle=600,
        json_serializer=_json_text,
        json_deserializer=pydantic_core.from_json,
        connect_args={
            "server_settings": {
                "statement_timeout": str(settings.statement_timeout_ms),
                "application_name": "sentinai",
                # The rows a batch touches are cached: with the default 4.0, PostgreSQL prefers hashing
                # a whole table to a few hundred index probes for a batch's UPDATE ... FROM unnest.
                "random_page_cost": "1.1",
            },
            "timeout": 10,
        },
    )


def _json_text(value: object) -> str:
    return pydantic_core.to_json(value).decode()


def sqlstate_of(error: BaseException) -> str | None:
    """The SQLSTATE of a driver error, looking through SQLAlchemy's wrapping."""
    for candidate in (getattr(error, "orig", None), error.__cause__, error):
        state = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(state, str):
            return state
        inner = getattr(candidate, "__cause__", None)
        state = getattr(inner, "sqlstate", None)
        if isinstance(state, str):
            return state
    return None


def classify_database_error(error: BaseException) -> SentinaiError:
    """Map a driver or network error to our taxonomy (the caller raises it `from error`)."""
    if isinstance(error, SentinaiError):
        return error
    state = sqlstate_of(error)
    if state is not None:
        sqlstate_class = state[:2]
        if sqlstate_class in _TRANSIENT_SQLSTATE_CLASSES:
            return DatabaseUnavailableError(f"PostgreSQL SQLSTATE {state}: {_short(error)}")
        if sqlstate_class in _FATAL_SQLSTATE_CLASSES:
            return ConfigurationError(f"PostgreSQL SQLSTATE {state} (check DATABASE_URL and migrations): {_short(error)}")
        return DatabaseError(f"PostgreSQL SQLSTATE {state}: {_short(error)}")
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return DatabaseUnavailableError(f"PostgreSQL connection lost: {_short(error)}")
    if isinstance(error, (OSError, asyncio.TimeoutError, ConnectionError, sa_exc.InterfaceError, sa_exc.OperationalError)):
        return DatabaseUnavailableError(f"PostgreSQL unreachable: {_short(error)}")
    return DatabaseError(f"database error: {_short(error)}")


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One transaction; driver errors leave it as classified SentinaiErrors."""
    try:
        async with engine.begin() as connection:
            yield connection
    except SentinaiError:
        raise
    except Exception as error:
        raise classify_database_error(error) from error


@asynccontextmanager
async def autocommit(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection on which every statement is its own transaction: no BEGIN and COMMIT round trips.
    For work whose writes are one statement (a batch's `WriteBatch`); driver errors leave it as
    classified SentinaiErrors."""
    try:
        async with engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            yield connection
    except SentinaiError:
        raise
    except Exception as error:
        raise classify_database_error(error) from error


async def run_in_transaction(engine: AsyncEngine, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    async with transaction(engine) as connection:
        return await work(connection)


def _short(error: BaseException, limit: int = 300) -> str:
    text = str(getattr(error, "orig", None) or error).strip().splitlines()
    first = text[0] if text else type(error).__name__
    return first[:limit]
