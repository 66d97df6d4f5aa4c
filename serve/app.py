"""The operations API as a FastAPI app, built without Ray: `build_app(settings, services=...)`.

Routes (the runbook's endpoints; see docs/api.md):

    GET  /health  /health/db  /health/workers                 public unless SENTINAI_SERVE__PUBLIC_HEALTH=false
    GET  /metrics                                             public unless SENTINAI_SERVE__PUBLIC_METRICS=false
    GET  /api/exceptions/{tenant_id}                          filtered page
    POST /api/exceptions/{tenant_id}                          ingest one or a batch (202)
    GET  /api/exceptions/{tenant_id}/{exception_id}[/trace]
    GET  /api/exceptions/{exception_id}/events
    POST /api/exceptions/{tenant_id}/{exception_id}/approve|reject
    GET|DELETE /api/admin/dlq, GET /api/admin/dlq/stats, GET /api/admin/dlq/{id},
    POST /api/admin/dlq/{id}/replay, POST /api/admin/dlq/replay  (admin token)
    GET  /api/openapi.json                                    any valid credentials

Errors are JSON `{"detail": ...}`: 4xx for anything wrong with the request, 503 when PostgreSQL or
Kafka is unavailable (retry later), 500 only for a bug (logged with its traceback).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from pipeline.errors import SentinaiError, TransientError, ValidationError
from pipeline.settings import Settings
from serve.auth import Caller, admin_dependency, caller_dependency, optional_caller
from serve.limits import BodyLimitMiddleware
from serve.routers.dlq import dlq_router
from serve.routers.exceptions import exceptions_router
from serve.routers.health import health_router
from serve.routers.ingest import ingest_router
from serve.routers.metrics import metrics_router
from serve.services import ApiServices

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"


def build_app(settings: Settings, *, services: ApiServices) -> FastAPI:
    """The app over `services` (closed when the app shuts down)."""
    if services.settings is not settings and services.settings != settings:
        raise ValueError("services were built for other settings")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await services.close()

    app = FastAPI(
        title="SentinAI operations API",
        version=API_VERSION,
        description="Health, metrics, traces, ingest, DLQ and approvals of the SentinAI platform.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served below, behind credentials
        lifespan=lifespan,
    )
    caller = caller_dependency(services)
    admin = admin_dependency(services, caller)
    app.include_router(health_router(services, optional_caller(services, settings.serve.public_health, caller)))
    app.include_router(metrics_router(services, optional_caller(services, settings.serve.public_metrics, caller)))
    app.include_router(exceptions_router(services, caller))
    app.include_router(ingest_router(services, caller))
    app.include_router(dlq_router(services, admin))

    @app.get("/api/openapi.json", include_in_schema=False)
    async def openapi(_: Caller = Depends(caller)) -> JSONResponse:
        return JSONResponse(app.openapi())

    app.add_exception_handler(SentinaiError, _sentinai_error)  # type: ignore[arg-type]
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.serve.max_body_bytes)
    return app


async def _sentinai_error(request: Request, error: SentinaiError) -> JSONResponse:
    if isinstance(error, TransientError):
        log.warning("%s %s: %s: %s", request.method, request.url.path, error.error_type, error)
        return JSONResponse({"detail": f"{error.error_type}: {error}; retry later"}, 503, headers={"Retry-After": "5"})
    if isinstance(error, ValidationError):
        return JSONResponse({"detail": f"{error.error_type}: {error}"}, 422)
    log.error("%s %s failed: %s: %s", request.method, request.url.path, error.error_type, error, exc_info=error)
    return JSONResponse({"detail": f"{error.error_type}: {error}"}, 500)
