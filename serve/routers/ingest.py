"""`POST /api/exceptions/{tenant_id}`: ingest one exception or a batch.

The body is one of (the tenant always comes from the path):

    {"exception": {...}}            one exception
    {"exceptions": [{...}, ...]}    a batch (at most SENTINAI_SERVE__MAX_BATCH_ITEMS)
    [{...}, ...]                    a batch, bare
    {...}                           one exception, bare (an object without those two keys)

Each item is validated exactly as `sentinai submit` validates a line (`pipeline.ingest.ingestion_event`).
Valid items are produced to the intake topic (acks=all) by this process's own producer; invalid ones
are reported with their index and reason. 202 when at least one item was accepted, 422 when none was.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException
from fastapi.responses import JSONResponse

from pipeline.errors import PayloadTooLargeError, ValidationError
from pipeline.events import EventEnvelope, utc_now
from pipeline.ingest import ingestion_event
from pipeline.packs import PackRegistry
from pipeline.records import OutboundRecord
from pipeline.routing import input_topic
from serve.auth import Caller
from serve.params import TenantIdPath
from serve.services import ApiServices

log = logging.getLogger(__name__)

_EXAMPLE = {
    "exceptions": [{
        "exception_id": "EXC-1001", "source_system": "murex", "exception_type": "SETTLEMENT_FAIL",
        "description": "DVP of 250,000 US0378331005 failed at DTC", "occurred_at": "2026-11-29T08:00:00Z",
        "attributes": {"trade_id": "TRD-1", "amount": 1250000, "currency": "USD"},
    }]
}


def ingest_router(services: ApiServices, caller: Any) -> APIRouter:
    router = APIRouter(prefix="/api/exceptions", tags=["ingest"])
    settings = services.settings

    @router.post("/{tenant_id}", status_code=202, summary="ingest one exception or a batch")
    async def ingest(
        tenant_id: TenantIdPath,
        body: Annotated[dict[str, Any] | list[Any], Body(openapi_examples={"batch": {"value": _EXAMPLE}})],
        who: Caller = Depends(caller),
    ) -> JSONResponse:
        scope = who.tenant_scope(tenant_id)
        items = submitted_items(body)
        if not items:
            raise HTTPException(status_code=422, detail="no exception in the request")
        if len(items) > settings.serve.max_batch_items:
            raise HTTPException(status_code=413,
                                detail=f"{len(items)} exceptions in one request; at most {settings.serve.max_batch_items}")
        packs = await services.packs()
        if scope not in packs.tenants:
            packs = await services.packs(refresh=True)  # a tenant created moments ago
        accepted, rejected = validate_items(scope, items, packs, source=f"api:{who.name}",
                                            max_event_bytes=settings.max_event_bytes)
        if not accepted:
            return JSONResponse({"detail": "no valid exception in the request", "rejected": rejected}, 422)
        topic = input_topic(settings.kafka, "intake")
        await services.publish([
            OutboundRecord(topic, event.partition_key.encode(), event.to_bytes(),
                           (("event_type", event.event_type.value.encode()), ("tenant_id", event.tenant_id.encode())))
            for _, event in accepted
        ])
        log.info("ingest via API by %s: tenant_id=%s accepted=%d rejected=%d", who.name, scope, len(accepted), len(rejected))
        if settings.log_events:
            for _, event in accepted:
                log.info("%s event_type=%s ingested via API by %s", event.log_context(), event.event_type.value, who.name)
        return JSONResponse({
            "accepted": [{"index": index, "exception_id": event.exception_id, "event_id": event.event_id}
                         for index, event in accepted],
            "rejected": rejected,
            "exception_ids": [event.exception_id for _, event in accepted],
        }, 202)

    return router


def submitted_items(body: dict[str, Any] | list[Any]) -> list[Any]:
    """The exceptions in a request body, in the shapes the module docstring lists."""
    if isinstance(body, list):
        return body
    if set(body) == {"exceptions"}:
        if not isinstance(body["exceptions"], list):
            raise HTTPException(status_code=422, detail="`exceptions` must be a JSON array")
        return body["exceptions"]
    if set(body) == {"exception"}:
        return [body["exception"]]
    if "exception" in body or "exceptions" in body:
        raise HTTPException(status_code=422,
                            detail="give {\"exception\": {...}} or {\"exceptions\": [...]} alone, or a bare exception")
    return [body]


def validate_items(tenant_id: str, items: list[Any], packs: PackRegistry, *, source: str,
                   max_event_bytes: int) -> tuple[list[tuple[int, EventEnvelope]], list[dict[str, Any]]]:
    """Per item: an ExceptionIngested event, or the reason it was refused."""
    accepted: list[tuple[int, EventEnvelope]] = []
    rejected: list[dict[str, Any]] = []
    now = utc_now()
    for index, item in enumerate(items):
        try:
            if isinstance(item, dict) and "tenant_id" in item:
                if item["tenant_id"] != tenant_id:
                    raise ValidationError("tenant_id in the exception differs from the one in the path")
                item = {key: value for key, value in item.items() if key != "tenant_id"}
            event = ingestion_event(tenant_id, item, packs=packs, now=now, source=source)
            size = len(event.to_bytes())
            if size > max_event_bytes:
                raise PayloadTooLargeError(f"the event is {size} bytes; at most {max_event_bytes}")
        except ValidationError as error:
            rejected.append({"index": index, "error_type": error.error_type, "reason": str(error)})
        except (ValueError, TypeError, RecursionError) as error:
            # e.g. nesting too deep to serialise: bad input, never a 5xx
            rejected.append({"index": index, "error_type": "validation_error", "reason": f"not a valid exception: {error}"})
        else:
            accepted.append((index, event))
    return accepted, rejected
