"""Exceptions: list, detail, events, trace (reads) and approve / reject (commands).

Every read filters by the tenant the caller may see; another tenant's exception is answered 404,
exactly like one that does not exist.
"""

# No `from __future__ import annotations`: the routes use page-size types built at run time,
# which FastAPI must see as objects, not as strings it cannot resolve.

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from pipeline import queries
from pipeline.events import EventEnvelope, EventType, new_event_id, utc_now
from pipeline.packs import Severity
from pipeline.records import OutboundRecord
from pipeline.routing import topics_for
from serve.auth import NOT_FOUND, Caller
from serve.params import LABEL_PATTERN, ExceptionIdPath, Offset, TenantIdPath, TenantIdQuery
from serve.services import ApiServices

log = logging.getLogger(__name__)

AWAITING_APPROVAL = "awaiting_approval"


class ApprovalRequest(BaseModel):
    """Optional body of approve / reject."""

    model_config = ConfigDict(extra="forbid")

    comment: str | None = Field(default=None, max_length=2000, description="recorded with the decision")


def exceptions_router(services: ApiServices, caller: Any) -> APIRouter:
    router = APIRouter(prefix="/api/exceptions", tags=["exceptions"])
    max_page = services.settings.serve.max_page_size
    Limit = Annotated[int, Query(ge=1, le=max_page, description=f"page size, at most {max_page}")]
    Filter = Annotated[str | None, Query(min_length=1, max_length=64, pattern=LABEL_PATTERN)]

    # Declared before `/{tenant_id}/{exception_id}`, which would otherwise take `events` as an exception id.
    @router.get("/{exception_id}/events", summary="every recorded event of an exception (tenant from the credentials)")
    async def exception_events(exception_id: ExceptionIdPath, tenant_id: TenantIdQuery = None,
                               who: Caller = Depends(caller)) -> JSONResponse:
        if who.is_admin:
            scope = tenant_id  # the admin may narrow to one tenant, or see every tenant's exception of that id
        else:
            scope = who.tenant_scope(tenant_id) if tenant_id is not None else who.tenant_id
        events = await queries.exception_events(await services.engine(), exception_id, tenant_id=scope)
        if not events:
            raise HTTPException(status_code=404, detail=NOT_FOUND)
        return JSONResponse(jsonable_encoder({"exception_id": exception_id, "events": events}))

    @router.get("/{tenant_id}", summary="a page of the tenant's exceptions, newest first")
    async def list_exceptions(
        tenant_id: TenantIdPath,
        status: Filter = None,
        severity: Severity | None = None,
        exception_type: Filter = None,
        limit: Limit = 50,
        offset: Offset = 0,
        who: Caller = Depends(caller),
    ) -> JSONResponse:
        scope = who.tenant_scope(tenant_id)
        items, total = await queries.list_exceptions(
            await services.engine(), scope,
            queries.ExceptionFilter(status=status, severity=severity.value if severity else None, exception_type=exception_type),
            limit=limit, offset=offset,
        )
        return JSONResponse(jsonable_encoder({"items": items, "total": total, "limit": limit, "offset": offset}))

    @router.get("/{tenant_id}/{exception_id}", summary="one exception with its playbook run and feedback")
    async def exception_detail(tenant_id: TenantIdPath, exception_id: ExceptionIdPath,
                               who: Caller = Depends(caller)) -> JSONResponse:
        scope = who.tenant_scope(tenant_id)  # another tenant's exception: 404 before any query
        return _found(await queries.exception_detail(await services.engine(), scope, exception_id))

    @router.get("/{tenant_id}/{exception_id}/trace",
                summary="the exception's events across stages in order, with timings, retries and its current state")
    async def exception_trace(tenant_id: TenantIdPath, exception_id: ExceptionIdPath,
                              who: Caller = Depends(caller)) -> JSONResponse:
        scope = who.tenant_scope(tenant_id)  # another tenant's exception: 404 before any query
        return _found(await queries.exception_trace(await services.engine(), scope, exception_id))

    async def decide(tenant_id: str, exception_id: str, approved: bool, request: ApprovalRequest | None,
                     who: Caller) -> JSONResponse:
        scope = who.tenant_scope(tenant_id)
        status = await queries.exception_status(await services.engine(), scope, exception_id)
        if status is None:
            raise HTTPException(status_code=404, detail=NOT_FOUND)
        if status != AWAITING_APPROVAL:
            raise HTTPException(status_code=409, detail=f"the exception is {status}, not {AWAITING_APPROVAL}")
        comment = request.comment if request is not None else None
        event = EventEnvelope(
            event_id=new_event_id(), event_type=EventType.APPROVAL_DECIDED, tenant_id=scope, exception_id=exception_id,
            timestamp=utc_now(), payload={"approved": approved, "decided_by": who.name, "comment": comment},
            metadata={"source": "api"},
        )
        await services.publish(event_records(services, event))
        log.info("approval %s by %s published %s", "granted" if approved else "refused", who.name, event.log_context())
        return JSONResponse({"event_id": event.event_id, "exception_id": exception_id, "approved": approved}, 202)

    @router.post("/{tenant_id}/{exception_id}/approve", status_code=202,
                 summary="resume a playbook that waits for approval (409 unless awaiting_approval)")
    async def approve(tenant_id: TenantIdPath, exception_id: ExceptionIdPath,
                      request: Annotated[ApprovalRequest | None, Body()] = None, who: Caller = Depends(caller)) -> JSONResponse:
        return await decide(tenant_id, exception_id, True, request, who)

    @router.post("/{tenant_id}/{exception_id}/reject", status_code=202,
                 summary="stop a playbook that waits for approval (409 unless awaiting_approval)")
    async def reject(tenant_id: TenantIdPath, exception_id: ExceptionIdPath,
                     request: Annotated[ApprovalRequest | None, Body()] = None, who: Caller = Depends(caller)) -> JSONResponse:
        return await decide(tenant_id, exception_id, False, request, who)

    return router


def _found(document: object | None) -> JSONResponse:
    """The document as JSON; 404 when it is not there, or belongs to another tenant (the same answer)."""
    if document is None:
        raise HTTPException(status_code=404, detail=NOT_FOUND)
    return JSONResponse(jsonable_encoder(document))


def event_records(services: ApiServices, event: EventEnvelope) -> list[OutboundRecord]:
    """The event on every topic its type routes to, keyed by `tenant_id:exception_id` (ordering)."""
    headers = (("event_type", event.event_type.value.encode()), ("tenant_id", event.tenant_id.encode()))
    value, key = event.to_bytes(), event.partition_key.encode()
    return [OutboundRecord(topic, key, value, headers) for topic in topics_for(services.settings.kafka, event.event_type)]
