"""Unit tests run with no services: no Ray, no broker, no PostgreSQL, no network.

Ray Serve's unit tests make `ray.init` raise; so do we, wherever some test module has already
imported ray (importing it here just to patch it would cost seconds per run).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

from pipeline.packs import PackRegistry, load_packs
from pipeline.settings import Settings

_RUNBOOK_VARIABLES = (
    "DATABASE_URL",
    "KAFKA_BOOTSTRAP_SERVERS",
    "RAY_ADDRESS",
    "WORKER_TYPE",
    "CONCURRENCY",
    "GROUP_ID",
)


@pytest.fixture(autouse=True)
def ray_init_forbidden(monkeypatch: pytest.MonkeyPatch) -> None:
    ray = sys.modules.get("ray")
    if ray is None:
        return

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a unit test called ray.init(); unit tests run without Ray")

    monkeypatch.setattr(ray, "init", refuse)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No SENTINAI_* or runbook variable of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.upper().startswith("SENTINAI_") or name.upper() in _RUNBOOK_VARIABLES:
            monkeypatch.delenv(name)
    yield


@pytest.fixture
def settings(clean_env: None) -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def packs() -> PackRegistry:
    """The bundled domain and tenant packs (read-only: tests that need changes build a copy)."""
    return load_packs()
