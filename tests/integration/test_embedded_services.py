"""The embedded services `sentinai up` starts with nothing configured, run as real processes.

As root the embedded PostgreSQL chowns its data directory to a system user and opens every parent
directory to all users, so each test gives it a dedicated directory (the `postgres_dir` fixture).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from cluster.embedded import BundledBroker, EmbeddedPostgres, free_port
from cluster.embedded.ports import is_port_free
from cluster.embedded.postgres import server_settings
from pipeline.errors import ConfigurationError

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


# --- the bundled broker ------------------------------------------------------------------------


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BundledBroker]:
    bundled = BundledBroker(port=free_port(), log_path=tmp_path / "tansu.log")
    yield bundled
    bundled.stop()


async def _topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def _create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    # The broker reports failures as codes in the response, not as exceptions.
    assert [error_code for _, error_code, *_ in response.topic_errors] == [0]


async def test_broker_round_trips_a_message(broker: BundledBroker) -> None:
    bootstrap = broker.start()
    assert bootstrap == f"127.0.0.1:{broker.port}"
    assert broker.is_running() and broker.pid is not None
    topic = f"roundtrip-{uuid.uuid4().hex}"
    await _create_topic(bootstrap, topic)

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"hello", key=b"k1")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), timeout=10)
    finally:
        await consumer.stop()
    assert (record.key, record.value) == (b"k1", b"hello")


def test_broker_stop_frees_the_port(broker: BundledBroker) -> None:
    broker.start()
    pid = broker.pid
    assert pid is not None
    broker.stop()
    assert not broker.is_running() and broker.pid is None
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert is_port_free(broker.port)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", broker.port), timeout=1).close()


def test_broker_refuses_a_port_held_by_another_listener(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        broker = BundledBroker(port=port, log_path=tmp_path / "tansu.log")
        with pytest.raises(ConfigurationError) as raised:
            broker.start()
    assert str(port) in str(raised.value)
    assert "SENTINAI_KAFKA__BUNDLED_PORT" in str(raised.value)
    assert not broker.is_running()


async def test_broker_restart_loses_its_topics(broker: BundledBroker) -> None:
    """Known limit (DESIGN.md §8): the memory store keeps nothing across a restart."""
    bootstrap = broker.start()
    topic = f"ephemeral-{uuid.uuid4().hex}"
    await _create_topic(bootstrap, topic)
    assert topic in await _topics(bootstrap)
    first_pid = broker.pid

    assert broker.restart() == bootstrap
    assert broker.pid != first_pid
    assert topic not in await _topics(bootstrap)


def _fake_tansu(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "fake-tansu"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return script


def test_broker_that_exits_while_starting_reports_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = _fake_tansu(tmp_path, 'for i in $(seq 1 60); do echo "line $i"; done; exit 3')
    monkeypatch.setattr("cluster.embedded.broker.tansu_binary", lambda: script)
    broker = BundledBroker(port=free_port(), log_path=tmp_path / "tansu.log")
    with pytest.raises(ConfigurationError, match="exited with code 3") as raised:
        broker.start(timeout_s=10)
    message = str(raised.value)
    assert "line 60" in message and "line 21" in message and "line 20\n" not in message  # the last 40 lines
    assert not broker.is_running()


def test_broker_that_never_answers_times_out_and_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = _fake_tansu(tmp_path, "echo never listening; exec sleep 60")
    monkeypatch.setattr("cluster.embedded.broker.tansu_binary", lambda: script)
    broker = BundledBroker(port=free_port(), log_path=tmp_path / "tansu.log")
    with pytest.raises(ConfigurationError, match="did not answer") as raised:
        broker.start(timeout_s=0.5)
    assert "never listening" in str(raised.value)
    assert not broker.is_running()


# --- the embedded PostgreSQL -------------------------------------------------------------------


@pytest.fixture
def postgres(postgres_dir: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(postgres_dir)
    yield server
    server.stop()


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _fetchval(url: str, sql: str) -> object:
    connection = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        return await connection.fetchval(sql)
    finally:
        await connection.close()


async def _execute(url: str, *statements: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            for statement in statements:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()


async def test_postgres_serves_the_sentinai_database(postgres: EmbeddedPostgres) -> None:
    url = postgres.start()
    assert url.startswith("postgresql+asyncpg://postgres@/sentinai?host=")
    assert postgres.is_running()
    assert await _fetchval(url, "SELECT 1") == 1
    assert await _fetchval(url, "SELECT current_database()") == "sentinai"
    # SQLAlchemy's asyncpg dialect takes the same URL.
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            assert (await connection.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await engine.dispose()


async def test_postgres_keeps_data_across_stop_and_start(postgres: EmbeddedPostgres) -> None:
    url = postgres.start()
    await _execute(url, "CREATE TABLE kept (v text)", "INSERT INTO kept VALUES ('survives')")
    postgres.stop()
    assert not postgres.is_running() and postgres.pid is None

    assert postgres.start() == url
    assert await _fetchval(url, "SELECT v FROM kept") == "survives"


async def test_postgres_clears_a_postmaster_pid_naming_an_unrelated_live_process(
    postgres: EmbeddedPostgres,
) -> None:
    postgres.start()
    lock_file = postgres.data_dir / "postmaster.pid"
    lines = lock_file.read_text().splitlines()
    postgres.stop()
    # As after a crash when the PID was reused: the package alone would think the server runs.
    lock_file.write_text("\n".join([str(os.getpid()), *lines[1:]]) + "\n")

    url = postgres.start()
    assert postgres.pid not in (None, os.getpid())
    assert await _fetchval(url, "SELECT 1") == 1


async def test_postgres_starts_after_its_postmaster_was_killed(postgres: EmbeddedPostgres) -> None:
    url = postgres.start()
    await _execute(url, "CREATE TABLE committed (v int)", "INSERT INTO committed VALUES (42)")
    killed = postgres.pid
    assert killed is not None
    os.kill(killed, signal.SIGKILL)
    # No waiting: the killed postmaster may still be dying, or an unreaped zombie, when start() looks.
    assert postgres.start() == url
    assert postgres.pid != killed
    assert await _fetchval(url, "SELECT v FROM committed") == 42


async def test_postgres_starts_when_the_postmaster_dies_while_its_settings_are_read(
    postgres: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CI's race, made certain: a killed postmaster still looked alive when start() came, and died
    # while start() read its settings. start() must look again and start a new server, not fail.
    url = postgres.start()
    await _execute(url, "CREATE TABLE survived (v int)", "INSERT INTO survived VALUES (7)")
    dying = postgres.pid
    assert dying is not None
    read_settings = EmbeddedPostgres._apply_server_settings

    def kill_then_read(self: EmbeddedPostgres) -> bool:
        if self.pid == dying:
            os.kill(dying, signal.SIGKILL)
            _wait_until_dead(dying)
        return read_settings(self)

    monkeypatch.setattr(EmbeddedPostgres, "_apply_server_settings", kill_then_read)

    assert postgres.start() == url
    assert postgres.pid not in (None, dying)
    assert await _fetchval(url, "SELECT v FROM survived") == 7


def _wait_until_dead(pid: int, timeout_s: float = 10) -> None:
    """Until `pid` is gone or a zombie (not our child: whoever reaps it may take a while)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still runs {timeout_s} s after SIGKILL")


async def _show(url: str, name: str) -> object:
    return await _fetchval(url, f"SHOW {name}")


async def test_postgres_runs_with_the_platforms_settings(postgres: EmbeddedPostgres) -> None:
    # A new directory starts with PostgreSQL's defaults (shared_buffers 128 MB): `start` sets the
    # platform's and restarts the server for those that need a restart.
    url = postgres.start()
    assert postgres.settings == server_settings()
    for name, value in server_settings().items():
        assert await _show(url, name) == value, name


async def test_postgres_leaves_a_running_server_as_it_is_and_applies_its_settings_at_the_next_start(
    postgres_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A value other than this machine's (128 MB is PostgreSQL's default, and this machine's below 2 GB).
    older_buffers = "256MB" if server_settings()["shared_buffers"] == "128MB" else "128MB"
    older = EmbeddedPostgres(postgres_dir, overrides={"shared_buffers": older_buffers, "max_wal_size": "1GB"})
    url = older.start()
    assert await _show(url, "shared_buffers") == older_buffers
    running = older.pid

    current = EmbeddedPostgres(postgres_dir)
    try:
        # Adopted: others may be using it, so no restart, and a warning that names the settings.
        assert current.start() == url
        assert current.pid == running
        assert await _show(url, "shared_buffers") == older_buffers
        assert "runs with older settings" in caplog.text and "shared_buffers=" in caplog.text
        # What needs no restart applies at the reload, which the server takes in a moment.
        deadline = time.monotonic() + 5
        while await _show(url, "max_wal_size") != server_settings()["max_wal_size"]:
            assert time.monotonic() < deadline, "max_wal_size was not reloaded"
            await asyncio.sleep(0.05)

        current.stop()
        assert current.start() == url
        for name, value in server_settings().items():
            assert await _show(url, name) == value, name
    finally:
        current.stop()


def test_postgres_refuses_a_directory_that_is_not_dedicated(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "notes.txt").write_text("not a database")
    with pytest.raises(ConfigurationError, match="dedicated directory"):
        EmbeddedPostgres(shared).start()
    assert not EmbeddedPostgres(shared).is_running()
