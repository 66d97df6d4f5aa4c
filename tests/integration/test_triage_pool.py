"""The triage model pool on a local Ray: the real embedded model, autoscaling up under load and back
down when idle, and the whole pipeline triaging with it."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from ray import serve

from actors.deployment import start_serve
from actors.triage_pool import ServeTriageBackend, start_triage_pool, stop_triage_pool, triage_replicas
from pipeline.packs import load_packs
from pipeline.settings import Settings, TriagePoolSettings, TriageSettings
from pipeline.triage import TriageInput
from tests.integration.helpers import (
    demo_events,
    fetch,
    load_packs_for,
    publish_events,
    running_platform,
    wait_for_final,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_session")]

_WORDS = ["settlement", "failed", "DTC", "counterparty", "short", "securities", "cash", "break", "ledger", "claim",
          "authorization", "missing", "CPT", "ICD", "eligibility", "lapsed", "trade", "confirm", "mismatch", "price"]


def _pool_settings(settings: Settings) -> Settings:
    pool = TriagePoolSettings(min_replicas=1, max_replicas=3, num_cpus=0.1, target_ongoing_requests=1,
                              upscale_delay_s=1, downscale_delay_s=4, chunk_size=4)
    return settings.model_copy(update={"triage": TriageSettings(backend="embedded", pool=pool, cache_size=0,
                                                                rules_shortcut_confidence=None)})


def test_the_model_pool_scales_up_under_load_and_back_down_when_idle(settings: Settings) -> None:
    settings = _pool_settings(settings)
    start_serve(settings)
    start_triage_pool(settings)
    try:
        assert triage_replicas() == 1
        backend = ServeTriageBackend(chunk_size=settings.triage.pool.chunk_size)
        tenant = load_packs().view("FIN_ACME")
        rng = random.Random(1)

        async def load(seconds: float) -> int:
            classified = 0
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                batch = [TriageInput(tenant, f"E{i}", None, " ".join(rng.choices(_WORDS, k=12)), {}) for i in range(64)]
                decisions = await backend.classify_async(batch)
                assert len(decisions) == 64 and {d.backend for d in decisions} <= {"embedded", "rules"}
                classified += len(decisions)
                if triage_replicas() >= 2:
                    break
            return classified

        peak = 1
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and peak < 2:
            asyncio.run(load(5))
            peak = max(peak, triage_replicas())
        assert peak >= 2, "the pool did not grow under load"

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and triage_replicas() > 1:
            time.sleep(1)
        assert triage_replicas() == 1, "the pool did not shrink back when the load stopped"
    finally:
        stop_triage_pool()


def test_the_pipeline_triages_with_the_embedded_model(settings: Settings) -> None:
    settings = _pool_settings(settings)
    packs = load_packs_for(settings)
    # Without a type hint the rules cannot shortcut: the model decides.
    events = [event.model_copy(update={"payload": {k: v for k, v in event.payload.items() if k != "exception_type"}})
              for event in demo_events(packs, count=60, seed=21)]
    try:
        with running_platform(settings):
            publish_events(settings, events)
            wait_for_final(settings, expected=60, timeout_s=180)
    finally:
        serve.delete("sentinai-triage")
    rows = fetch(settings, "SELECT triage_backend, triage_model, count(*) AS n FROM exceptions GROUP BY 1, 2")
    assert {(row["triage_backend"], row["triage_model"]) for row in rows} == {("embedded", "all-MiniLM-L6-v2-int8")}
    assert sum(row["n"] for row in rows) == 60
