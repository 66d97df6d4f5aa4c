"""The operations API on Ray Serve: `start_operations_api(settings)` and `stop_operations_api()`.

One Serve application (`sentinai`, route prefix `/`) with one FastAPI ingress deployment, beside
the platform's other Serve applications (the triage model pool, an LLM) on the same Serve instance
and HTTP proxy. Each replica reserves 0.25 CPU (Serve's default of 1 would starve the stage actors
on small machines), builds its own database engine and Kafka producer lazily on first use, reaches
the supervisor by name for worker health, and mirrors /metrics into Ray's metrics. Nothing in the
pipeline calls the API or a Serve handle: ingest produces straight to Kafka.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import ray
from fastapi import FastAPI
from ray import serve

from actors.naming import SUPERVISOR_NAME
from actors.runtime import configure_logging
from pipeline.settings import Settings
from serve.app import build_app
from serve.ray_metrics import RayMetricsExporter
from serve.services import PlatformServices

log = logging.getLogger(__name__)

APP_NAME = "sentinai"
DEPLOYMENT_NAME = "OperationsApi"
REPLICA_NUM_CPUS = 0.25
_PER_ACTOR_TIMEOUT_S = 1.0


async def supervisor_health(namespace: str, timeout_s: float) -> dict[str, Any] | None:
    """The supervisor's health report, or None when it is missing, dead or slower than `timeout_s`."""
    try:
        supervisor = ray.get_actor(SUPERVISOR_NAME, namespace=namespace)
        return await asyncio.wait_for(supervisor.health.remote(_PER_ACTOR_TIMEOUT_S), timeout=timeout_s)
    except Exception:  # noqa: BLE001 - unreachable, for whatever reason, is the answer
        log.warning("supervisor %s in namespace %s did not answer within %.1fs", SUPERVISOR_NAME, namespace, timeout_s)
        return None


@serve.deployment(name=DEPLOYMENT_NAME, ray_actor_options={"num_cpus": REPLICA_NUM_CPUS})
@serve.ingress()
class OperationsApi:
    """One replica of the API. The FastAPI app is built on the replica (`__serve_build_asgi_app__`)."""

    def __init__(self, settings: Settings) -> None:
        configure_logging(settings)
        self.settings = settings

    def __serve_build_asgi_app__(self) -> FastAPI:
        namespace = self.settings.ray.namespace

        async def health(timeout_s: float) -> dict[str, Any] | None:
            return await supervisor_health(namespace, timeout_s)

        services = PlatformServices(
            self.settings,
            supervisor_health=health,
            metrics_exporter=RayMetricsExporter(tenant_labels=self.settings.serve.tenant_labels),
            client_id=f"sentinai-api-{serve.get_replica_context().replica_id.unique_id}",
        )
        return build_app(self.settings, services=services)


def start_operations_api(settings: Settings) -> Any:
    """Start Serve's HTTP proxy on settings.serve.host:port and deploy the API; returns its handle.
    Ray must be connected, and settings must name the database and the broker."""
    serve.start(http_options={"host": settings.serve.host, "port": settings.serve.port})
    application = OperationsApi.options(num_replicas=settings.serve.num_replicas).bind(settings)
    handle = serve.run(application, name=APP_NAME, route_prefix="/")
    log.info("operations API on http://%s:%d (%d replica(s))", settings.serve.host, settings.serve.port,
             settings.serve.num_replicas)
    return handle


def operations_api_deployed() -> bool:
    """Whether the API's application is on this Ray cluster's Serve already (another process serves it)."""
    return APP_NAME in serve.status().applications


def stop_operations_api() -> None:
    """Remove the API's application. Serve itself (controller and HTTP proxy) is shut down too when
    no other application runs on it: the triage model pool and an LLM application share the same
    Serve instance and must outlive the API while the stages finish their in-flight work."""
    serve.delete(APP_NAME)
    if not serve.status().applications:
        serve.shutdown()


__all__ = ["APP_NAME", "OperationsApi", "operations_api_deployed", "start_operations_api", "stop_operations_api"]
