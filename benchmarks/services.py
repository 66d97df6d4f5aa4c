"""The services one benchmark run needs, all on 127.0.0.1 and all removed afterwards.

- the bundled broker (Tansu), its log in the run's directory;
- PostgreSQL: the embedded server with its data in the run's directory (the default), or a fresh
  database created on the machine's server (`--database-url`) and dropped at the end;
- a local Ray (never an existing cluster) whose session files live in the run's directory.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psutil

from cluster.embedded import BundledBroker, EmbeddedPostgres, free_port

log = logging.getLogger(__name__)

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


def check_loopback(dsn: str) -> None:
    """Benchmarks run on this machine only: refuse a database URL that names another host."""
    host = urlsplit(dsn).hostname
    if host not in _LOOPBACK_HOSTS:
        raise SystemExit(f"--database-url must point at 127.0.0.1 (got host {host!r}): the benchmark runs locally only")


async def _execute(dsn: str, *statements: str) -> None:
    connection = await asyncpg.connect(dsn, timeout=15)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def _fetchval(dsn: str, sql: str) -> object:
    connection = await asyncpg.connect(dsn, timeout=15)
    try:
        return await connection.fetchval(sql)
    finally:
        await connection.close()


@contextmanager
def scratch_broker(name: str) -> Iterator[BundledBroker]:
    """A fresh bundled broker on a free port, its log in a temporary directory; stopped and removed on
    exit. For the probes that measure the broker alone (`broker_growth`, `fetch_wait`, `fetch_cycle`,
    `produce_cost`)."""
    with tempfile.TemporaryDirectory(prefix=f"sentinai-{name}-") as run_dir:
        broker = BundledBroker(port=free_port(), log_path=Path(run_dir) / "broker.log")
        try:
            broker.start()
            yield broker
        finally:
            broker.stop()


@dataclass
class BenchServices:
    """What one run started; `stop()` removes all of it and reports what failed instead of raising."""

    run_dir: Path
    broker: BundledBroker | None = None
    postgres: EmbeddedPostgres | None = None
    admin_dsn: str | None = None
    database_name: str | None = None
    database_url: str | None = None
    commit_timestamps: bool = False
    statement_stats: bool = False
    ray_started: bool = False
    notes: list[str] = field(default_factory=list)

    # --- start ----------------------------------------------------------------------------------

    def start_broker(self) -> str:
        self.broker = BundledBroker(port=free_port(), log_path=self.run_dir / "broker.log")
        return self.broker.start()

    def start_database(self, system_admin_url: str | None, *, commit_timestamps: bool, statement_stats: bool = False,
                       server_settings: dict[str, str] | None = None) -> str:
        """Return the SQLAlchemy URL of an empty database. Embedded only (all need a restart):
        `commit_timestamps` turns on track_commit_timestamp for commit-time latencies,
        `statement_stats` loads pg_stat_statements (with planning time) to see what the server spends on,
        `server_settings` sets server parameters for an experiment, over the embedded server's own."""
        if system_admin_url is None:
            self.postgres = EmbeddedPostgres(self.run_dir / "postgres", overrides=server_settings)
            url = self.postgres.start()
            changes = []
            if commit_timestamps:
                changes.append("ALTER SYSTEM SET track_commit_timestamp = on")
            if statement_stats:
                changes += ["ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'",
                            "ALTER SYSTEM SET pg_stat_statements.track_planning = on"]
            if changes:
                asyncio.run(_execute(asyncpg_dsn(url), *changes))
                self.postgres.stop()
                url = self.postgres.start()
        else:
            if server_settings:
                raise ValueError("server settings apply to the embedded PostgreSQL only")
            admin = asyncpg_dsn(system_admin_url)
            check_loopback(admin)
            self.admin_dsn = admin
            self.database_name = f"sentinai_bench_{uuid.uuid4().hex[:10]}"
            asyncio.run(_execute(admin, f'CREATE DATABASE "{self.database_name}"'))
            url = _with_database(admin, self.database_name).replace("postgresql://", "postgresql+asyncpg://", 1)
        self.database_url = url
        enabled = asyncio.run(_fetchval(asyncpg_dsn(url), "SHOW track_commit_timestamp"))
        self.commit_timestamps = enabled == "on"
        if statement_stats:
            try:
                asyncio.run(_execute(asyncpg_dsn(url), "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
                self.statement_stats = True
            except asyncpg.PostgresError as error:
                self.notes.append(f"pg_stat_statements unavailable: {error}")
        if commit_timestamps and not self.commit_timestamps:
            self.notes.append("track_commit_timestamp is off on this server: commit-time latencies not measured")
        return url

    def postmaster_pid(self) -> int | None:
        """The PostgreSQL server's main process, for CPU and memory sampling."""
        if self.postgres is not None:
            return self.postgres.pid
        if self.database_url is None:
            return None
        backend = asyncio.run(_fetchval(asyncpg_dsn(self.database_url), "SELECT pg_backend_pid()"))
        try:
            return psutil.Process(int(str(backend))).ppid()
        except psutil.Error:
            return None

    def start_ray(self, *, namespace: str, num_cpus: int, object_store_mb: int) -> None:
        """A new local Ray (address="local": never joins a cluster already on the machine)."""
        import ray

        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(
            address="local",
            namespace=namespace,
            num_cpus=num_cpus,
            include_dashboard=False,
            object_store_memory=object_store_mb * 1024 * 1024,
            log_to_driver=False,
            _temp_dir=str(self.run_dir / "ray"),
            runtime_env={"env_vars": {"RAY_AUTH_MODE": os.environ["RAY_AUTH_MODE"]}},
        )
        self.ray_started = True

    # --- stop -----------------------------------------------------------------------------------

    def stop(self) -> list[str]:
        """Ray, then the broker, then PostgreSQL. Every step runs even when an earlier one fails."""
        failures: list[str] = []
        if self.ray_started:
            try:
                import ray

                ray.shutdown()
            except Exception as error:  # noqa: BLE001 - teardown goes on
                failures.append(f"ray.shutdown: {error}")
            self.ray_started = False
        if self.broker is not None:
            try:
                self.broker.stop()
            except Exception as error:  # noqa: BLE001
                failures.append(f"broker.stop: {error}")
            self.broker = None
        if self.postgres is not None:
            try:
                self.postgres.stop()
            except Exception as error:  # noqa: BLE001
                failures.append(f"postgres.stop: {error}")
            self.postgres = None
        if self.admin_dsn is not None and self.database_name is not None:
            try:
                asyncio.run(_execute(self.admin_dsn, f'DROP DATABASE IF EXISTS "{self.database_name}" WITH (FORCE)'))
            except Exception as error:  # noqa: BLE001
                failures.append(f"drop database {self.database_name}: {error}")
            self.database_name = None
        return failures
