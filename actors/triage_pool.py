"""The triage model pool: a Ray Serve deployment of model replicas, autoscaled on load.

Each replica loads the configured backend once (the embedded model, or an OpenAI-compatible client,
with the fallback chain) and classifies chunks of exceptions. Replicas request `num_gpus` when
configured, so on a cluster from `ray-cluster.yaml` the Ray autoscaler adds GPU nodes while replicas
are pending. Serve scales them between `min_replicas` and `max_replicas` on the number of chunks in
flight. The triage stage's pool actors call it once per chunk (never per event) and in parallel, so
a burst of exceptions shows up as load that Serve can see.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ray import serve

from pipeline.packs import PackRegistry, TenantPack, TenantView, load_packs
from pipeline.settings import Settings
from pipeline.triage import TriageDecision, TriageInput
from pipeline.triage.factory import build_backend

log = logging.getLogger(__name__)

TRIAGE_APP = "sentinai-triage"
TRIAGE_DEPLOYMENT = "TriageModel"


class TriageModel:
    """One model replica. Requests carry only what classification needs: the tenant's domain pack
    decides the label set, so a replica needs no tenant registry (and no database)."""

    def __init__(self, settings: Settings) -> None:
        self._packs: PackRegistry = load_packs(settings.pack_dir)
        self._backend = build_backend(settings.triage, self._packs)
        self._views: dict[tuple[str, str], TenantView] = {}
        log.info("triage model replica ready: backend=%s", settings.triage.backend)

    def classify(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        inputs = [
            TriageInput(self._view(item["tenant_id"], item["domain"]), item["exception_id"], item.get("type_hint"),
                        item.get("description", ""), item.get("attributes", {}))
            for item in items
        ]
        return [vars(decision) for decision in self._backend.classify(inputs)]

    def _view(self, tenant_id: str, domain: str) -> TenantView:
        key = (tenant_id, domain)
        if key not in self._views:
            tenant = TenantPack(tenant_id=tenant_id, name=tenant_id, domain=domain)
            self._views[key] = TenantView(tenant=tenant, domain=self._packs.domains[domain])
        return self._views[key]


def start_triage_pool(settings: Settings) -> None:
    """Deploy (or update) the model pool as its own Serve application, with no HTTP route."""
    pool = settings.triage.pool
    deployment = serve.deployment(TriageModel, name=TRIAGE_DEPLOYMENT).options(
        ray_actor_options={"num_cpus": pool.num_cpus, "num_gpus": pool.num_gpus},
        max_ongoing_requests=max(2, int(pool.target_ongoing_requests * 2)),
        autoscaling_config={
            "min_replicas": pool.min_replicas,
            "initial_replicas": max(pool.min_replicas, 1),
            "max_replicas": pool.max_replicas,
            "target_ongoing_requests": pool.target_ongoing_requests,
            "upscale_delay_s": pool.upscale_delay_s,
            "downscale_delay_s": pool.downscale_delay_s,
            "metrics_interval_s": 1.0,
            "look_back_period_s": 3.0,
        },
    )
    serve.run(deployment.bind(settings), name=TRIAGE_APP, route_prefix=None)


def stop_triage_pool() -> None:
    serve.delete(TRIAGE_APP)


def triage_replicas() -> int:
    """Running replicas of the model pool (for tests, health and the docs' measurements)."""
    status = serve.status().applications.get(TRIAGE_APP)
    if status is None:
        return 0
    states = status.deployments[TRIAGE_DEPLOYMENT].replica_states
    return int(states.get("RUNNING", 0))


class ServeTriageBackend:
    """The triage stage's view of the pool: splits a batch into chunks and classifies them in
    parallel on the replicas. Raises whatever the replicas raise (the stage retries the batch)."""

    name = "pool"

    def __init__(self, chunk_size: int) -> None:
        self._chunk_size = chunk_size
        self._handle: Any = None

    async def classify_async(self, batch: list[TriageInput]) -> list[TriageDecision]:
        if not batch:
            return []
        if self._handle is None:
            self._handle = serve.get_deployment_handle(TRIAGE_DEPLOYMENT, app_name=TRIAGE_APP)
        items = [
            {"tenant_id": item.tenant.tenant_id, "domain": item.tenant.domain.pack, "exception_id": item.exception_id,
             "type_hint": item.type_hint, "description": item.description, "attributes": item.attributes}
            for item in batch
        ]
        chunks = [items[start : start + self._chunk_size] for start in range(0, len(items), self._chunk_size)]
        answers = await asyncio.gather(*(self._handle.classify.remote(chunk) for chunk in chunks))
        return [TriageDecision(**answer) for chunk_answers in answers for answer in chunk_answers]

    def classify(self, batch: list[TriageInput]) -> list[TriageDecision]:
        raise RuntimeError("ServeTriageBackend is asynchronous: use classify_async")
