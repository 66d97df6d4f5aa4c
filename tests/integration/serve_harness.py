"""The operations API on Ray Serve for integration tests: a module-wide database, the settings, the
API deployed on loopback, and Serve shut down afterwards. Shared by test_serve_api and
test_serve_schemathesis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from pydantic import SecretStr

from cluster.embedded import BundledBroker, free_port
from pipeline.events import utc_now
from pipeline.settings import ServeSettings, Settings
from pipeline.storage import api_keys
from pipeline.storage.database import create_engine
from tests.conftest import _admin, make_settings, sqlalchemy_url

ADMIN_TOKEN = "test-admin-" + uuid.uuid4().hex


@contextmanager
def module_database(template_database: str) -> Iterator[str]:
    """A fresh migrated database for a whole module (the `database` fixture is per test)."""
    name = f"sentinai_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"'))
    try:
        yield sqlalchemy_url(name)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def api_settings(broker: BundledBroker, database_url: str, tmp_path: Path) -> Settings:
    settings = make_settings(broker, database_url, tmp_path)
    serve = ServeSettings(host="127.0.0.1", port=free_port(), admin_token=SecretStr(ADMIN_TOKEN), max_page_size=100,
                          max_batch_items=200)
    return settings.model_copy(update={"serve": serve})


@contextmanager
def operations_api(settings: Settings) -> Iterator[httpx.Client]:
    """The API on Serve (loopback), removed afterwards. The caller shuts Serve down once the
    platform (whose triage pool may run on Serve too) has stopped: see `serve_shut_down`."""
    from serve.deploy import start_operations_api, stop_operations_api

    try:
        start_operations_api(settings)
        with httpx.Client(base_url=f"http://127.0.0.1:{settings.serve.port}", timeout=60) as client:
            wait_until(lambda: _answers(client), timeout_s=60, what="the API answers /health")
            yield client
    finally:
        stop_operations_api()


@contextmanager
def serve_shut_down() -> Iterator[None]:
    """Whatever Serve the block started is shut down at its end, whatever happens."""
    from ray import serve

    try:
        yield
    finally:
        serve.shutdown()


def _answers(client: httpx.Client) -> bool:
    try:
        return client.get("/health").status_code == 200
    except httpx.TransportError:
        return False


def create_key(settings: Settings, tenant_id: str, label: str = "test") -> api_keys.NewApiKey:
    async def create() -> api_keys.NewApiKey:
        engine = create_engine(settings.database.url.get_secret_value(), settings.database)  # type: ignore[union-attr]
        try:
            return await api_keys.create_key(engine, tenant_id, label=label, now=utc_now())
        finally:
            await engine.dispose()

    return asyncio.run(create())


def wait_until(condition: Callable[[], bool], *, timeout_s: float, what: str, interval_s: float = 0.5,
               state: Callable[[], object] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting until {what}" + (f": {state()}" if state else ""))
