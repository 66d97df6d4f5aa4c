"""`/api/admin/dlq`: list, stats, show, replay and clear the dead-letter queue (admin token only).

The logic is `pipeline.dlq.DeadLetterQueue`, the one `sentinai dlq` uses. A replay takes the entries
out of the queue in one transaction (recording it in `dlq_replays`), then this process publishes the
original records to their stage's topic and marks them published; a crash in between leaves an
unpublished replay that the supervisor publishes.
"""

# No `from __future__ import annotations`: the routes use page-size types built at run time,
# which FastAPI must see as objects, not as strings it cannot resolve.

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from pipeline.dlq import DeadLetterQueue, DlqFilter, Replay
from pipeline.errors import SentinaiError
from pipeline.events import decode_event, utc_now
from pipeline.settings import STAGE_NAMES
from serve.params import DlqIdPath, Offset, TenantIdQuery
from serve.services import ApiServices

log = logging.getLogger(__name__)

StageQuery = Annotated[Literal[STAGE_NAMES] | None, Query(description="worker_type of the entries")]  # type: ignore[valid-type]
ErrorTypeQuery = Annotated[str | None, Query(min_length=1, max_length=64, pattern=r"^[a-z0-9_]{1,64}$")]
REPLAYED_BY = "api:admin"


def dlq_router(services: ApiServices, admin: Any) -> APIRouter:
    router = APIRouter(prefix="/api/admin/dlq", tags=["dlq"], dependencies=[Depends(admin)])
    max_page = min(services.settings.serve.max_page_size, 500)  # DeadLetterQueue.list caps at 500
    Limit = Annotated[int, Query(ge=1, le=max_page, description=f"page size, at most {max_page}")]

    async def queue() -> DeadLetterQueue:
        return DeadLetterQueue(await services.engine(), services.settings.kafka)

    @router.get("", summary="entries, newest first, filtered by tenant, stage and error type")
    async def list_entries(tenant_id: TenantIdQuery = None, stage: StageQuery = None, error_type: ErrorTypeQuery = None,
                           limit: Limit = 50, offset: Offset = 0) -> JSONResponse:
        entries = await (await queue()).list(DlqFilter(tenant_id, stage, error_type), limit=limit, offset=offset)
        return JSONResponse(jsonable_encoder({"items": entries, "limit": limit, "offset": offset}))

    @router.get("/stats", summary="size, by error type, by tenant, by stage")
    async def stats(tenant_id: TenantIdQuery = None) -> dict[str, Any]:
        return await (await queue()).stats(tenant_id=tenant_id)

    @router.get("/{dlq_id}", summary="one entry with its original event")
    async def show(dlq_id: DlqIdPath) -> JSONResponse:
        entry = await (await queue()).show(dlq_id)
        if entry is None:
            raise HTTPException(status_code=404, detail=f"no DLQ entry {dlq_id}")
        return JSONResponse(jsonable_encoder(entry))

    @router.post("/replay", summary="replay every entry matching the filter (at least one filter is required)")
    async def replay_matching(tenant_id: TenantIdQuery = None, stage: StageQuery = None,
                              error_type: ErrorTypeQuery = None) -> dict[str, Any]:
        dlq_filter = DlqFilter(tenant_id, stage, error_type)
        if dlq_filter.is_empty():
            raise HTTPException(status_code=400, detail="give at least one of tenant_id, stage, error_type")
        dlq = await queue()
        replays = await dlq.replay(replayed_by=REPLAYED_BY, now=utc_now(), dlq_filter=dlq_filter)
        await _publish_pending(services, dlq)
        return {"replayed": len(replays), "dlq_ids": [replay.dlq_id for replay in replays]}

    @router.post("/{dlq_id}/replay", summary="replay one entry (404 when it is not in the queue)")
    async def replay_one(dlq_id: DlqIdPath) -> dict[str, Any]:
        dlq = await queue()
        replays = await dlq.replay(replayed_by=REPLAYED_BY, now=utc_now(), dlq_id=dlq_id)
        if not replays:
            raise HTTPException(status_code=404, detail=f"no DLQ entry {dlq_id} (replayed or cleared already?)")
        await _publish_pending(services, dlq)
        return {"replayed": 1, "dlq_ids": [dlq_id]}

    @router.delete("", summary="delete one tenant's entries (tenant_id is required)")
    async def clear(tenant_id: TenantIdQuery = None, stage: StageQuery = None,
                    error_type: ErrorTypeQuery = None) -> dict[str, Any]:
        if tenant_id is None:
            raise HTTPException(status_code=400, detail="tenant_id is required: entries are cleared one tenant at a time")
        deleted = await (await queue()).clear(DlqFilter(tenant_id, stage, error_type))
        log.warning("DLQ cleared by the admin: tenant_id=%s stage=%s error_type=%s deleted=%d",
                    tenant_id, stage, error_type, deleted)
        return {"deleted": deleted}

    return router


async def _publish_pending(services: ApiServices, dlq: DeadLetterQueue) -> list[Replay]:
    """Publish this replay's records and any an earlier crash left unpublished; then mark them."""
    pending = await dlq.unpublished_replays()
    await services.publish([replay.record for replay in pending])
    await dlq.mark_published([replay.replay_id for replay in pending], utc_now())
    for replay in pending:
        log.info("replayed DLQ entry %d to %s %s", replay.dlq_id, replay.record.topic, _log_context(replay))
    return pending


def _log_context(replay: Replay) -> str:
    try:
        return decode_event(replay.record.value).log_context()
    except SentinaiError:  # an undecodable record: it has no ids to show
        return "tenant_id=- exception_id=- event_id=-"
