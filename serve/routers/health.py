"""`GET /health`, `/health/db`, `/health/workers` (the runbook's health checks)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from sqlalchemy import text

from pipeline.errors import SentinaiError
from pipeline.storage.database import classify_database_error
from serve.services import ApiServices

DB_TIMEOUT_S = 3.0
SUPERVISOR_TIMEOUT_S = 10.0
"""The supervisor asks every consumer and pool actor in turn; a dead one costs it a timeout."""


def health_router(services: ApiServices, public: Any) -> APIRouter:
    router = APIRouter(tags=["health"], dependencies=[Depends(public)])

    @router.get("/health", summary="the API answers")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/health/db", summary="PostgreSQL answers and the schema is migrated (200, or 503 with the reason)")
    async def health_db() -> JSONResponse:
        started = time.perf_counter()
        try:
            revision = await asyncio.wait_for(_schema_revision(services), timeout=DB_TIMEOUT_S)
        except TimeoutError:
            return JSONResponse({"status": "down", "detail": f"PostgreSQL did not answer within {DB_TIMEOUT_S}s"}, 503)
        except Exception as error:  # noqa: BLE001 - any failure is the answer, with its reason
            reason = classify_database_error(error) if not isinstance(error, SentinaiError) else error
            return JSONResponse({"status": "down", "detail": f"{reason.error_type}: {reason}"}, 503)
        return JSONResponse({"status": "ok", "schema_revision": revision,
                             "latency_ms": round((time.perf_counter() - started) * 1000, 2)})

    @router.get("/health/workers",
                summary="per stage: consumer and pool actors alive vs configured, lag per partition, last heartbeat")
    async def health_workers() -> JSONResponse:
        report = await services.supervisor_health(SUPERVISOR_TIMEOUT_S)
        if report is None:
            return JSONResponse({"status": "down", "detail": "the supervisor actor is unreachable", "stages": {}}, 503)
        body = workers_report(report, now=time.time())
        return JSONResponse(body, 503 if body["status"] == "down" else 200)

    return router


async def _schema_revision(services: ApiServices) -> str | None:
    engine = await services.engine()
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
        return (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar_one_or_none()


def workers_report(health: dict[str, Any], *, now: float) -> dict[str, Any]:
    """The supervisor's report in the API's shape: lag as (topic, partition, lag) rows, heartbeats as
    ISO timestamps with their age."""
    stages: dict[str, Any] = {}
    for stage, entry in health.get("stages", {}).items():
        lag = [{"topic": topic, "partition": partition, "lag": value}
               for (topic, partition), value in sorted(parse_lag(entry.get("lag", {})).items())]
        last_poll = entry.get("last_poll_at") or None
        stages[stage] = {
            "group_id": entry.get("group_id"),
            "consumers": entry.get("consumers"),
            "pool": entry.get("pool"),
            "in_flight": entry.get("in_flight", 0),
            "held_by_rate_limit": entry.get("held_by_rate_limit", {}),
            "lag": lag,
            "total_lag": sum(row["lag"] for row in lag),
            "last_heartbeat": datetime.fromtimestamp(last_poll, UTC).isoformat() if last_poll else None,
            "heartbeat_age_s": round(now - last_poll, 3) if last_poll else None,
        }
    return {"status": health.get("status", "down"), "stages": stages, "supervisor": health.get("supervisor", {})}


def parse_lag(lag: dict[str, int]) -> dict[tuple[str, int], int]:
    """`{"topic[3]": 12}` (the consumers' form) -> `{("topic", 3): 12}`; malformed keys are skipped."""
    parsed: dict[tuple[str, int], int] = {}
    for key, value in lag.items():
        topic, _, rest = key.rpartition("[")
        if not topic or not rest.endswith("]") or not rest[:-1].isdigit():
            continue
        parsed[(topic, int(rest[:-1]))] = int(value)
    return parsed
