"""Execute an HTTP tool: POST (or GET) its input as JSON, with a timeout and an idempotency key.

The execution id travels as `Idempotency-Key`, so a receiving system can recognise the repeat when a
batch is retried after the call succeeded but before its result was committed.
"""

from __future__ import annotations

import httpx

from pipeline.errors import StageTimeoutError, ToolFailedError, ToolUnavailableError
from pipeline.packs.models import ToolSpec


async def call_http_tool(
    client: httpx.AsyncClient,
    spec: ToolSpec,
    url: str,
    tool_input: dict,
    *,
    execution_id: str,
    timeout_s: float,
    max_bytes: int,
) -> dict:
    """The tool's JSON object answer. 5xx, network errors and timeouts are transient; 4xx and
    non-JSON answers are permanent."""
    headers = {"Idempotency-Key": execution_id, "Accept": "application/json"}
    try:
        if spec.method == "GET":
            response = await client.get(url, params=tool_input, headers=headers, timeout=timeout_s)
        else:
            response = await client.post(url, json=tool_input, headers=headers, timeout=timeout_s)
    except httpx.TimeoutException as error:
        raise StageTimeoutError(f"tool at {url} did not answer within {timeout_s}s") from error
    except httpx.TransportError as error:
        raise ToolUnavailableError(f"tool at {url} unreachable: {type(error).__name__}") from error
    if response.status_code == 429 or response.status_code >= 500:
        raise ToolUnavailableError(f"tool at {url} answered HTTP {response.status_code}")
    if response.status_code >= 400:
        raise ToolFailedError(f"tool at {url} answered HTTP {response.status_code}: {response.text[:200]}")
    if len(response.content) > max_bytes:
        raise ToolFailedError(f"tool at {url} answered {len(response.content)} bytes, over {max_bytes}")
    try:
        body = response.json()
    except ValueError as error:
        raise ToolFailedError(f"tool at {url} answered non-JSON") from error
    if not isinstance(body, dict):
        raise ToolFailedError(f"tool at {url} answered JSON {type(body).__name__}, not an object")
    return body
