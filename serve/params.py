"""Path and query parameters with their bounds: a malformed value is a 422 with a JSON `detail`,
before any route code runs (never a 5xx)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

TENANT_ID_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"
EXCEPTION_ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,128}$"
LABEL_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"
MAX_OFFSET = 1_000_000_000
MAX_DLQ_ID = 2**63 - 1

TenantIdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=TENANT_ID_PATTERN, description="tenant id")]
ExceptionIdPath = Annotated[
    str, Path(min_length=1, max_length=128, pattern=EXCEPTION_ID_PATTERN, description="exception id")
]
DlqIdPath = Annotated[int, Path(ge=1, le=MAX_DLQ_ID, description="dead_letter_queue.id")]
TenantIdQuery = Annotated[
    str | None, Query(min_length=1, max_length=64, pattern=TENANT_ID_PATTERN, description="only this tenant")
]
LabelQuery = Annotated[str | None, Query(min_length=1, max_length=64, pattern=LABEL_PATTERN)]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="rows to skip")]
