"""pipeline.stages.tool: schema check, tenant enablement, built-in and HTTP execution, recording.

HTTP tools run against `httpx.MockTransport`: no socket is opened.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from pipeline.errors import (
    StageTimeoutError,
    ToolInputError,
    ToolNotEnabledError,
    ToolUnavailableError,
    UnexpectedEventError,
)
from pipeline.events import EventEnvelope, EventType
from pipeline.packs import PackRegistry, TenantPack
from pipeline.settings import Settings
from pipeline.stages import BatchState, Emission, ToolStage

NOW = datetime(2025, 6, 5, 9, 30, tzinfo=UTC)  # a Thursday
RESCHEDULE_INPUT = {
    "trade_id": "TRD-20250603-00412",
    "intended_settlement_date": "2025-06-03",
    "csd": "EUROCLEAR",
    "max_fail_days": 4,
}
HOOK_URL = "https://hooks.example.test/fin-hooks"


def requested(
    tool: str,
    tool_input: Any,
    *,
    tenant_id: str = "FIN_ACME",
    event_id: str = "evt-tool-request",
    step_index: int = 1,
) -> EventEnvelope:
    return EventEnvelope(
        event_id=event_id,
        event_type=EventType.TOOL_EXECUTION_REQUESTED,
        tenant_id=tenant_id,
        exception_id="EXC-1",
        timestamp=NOW,
        payload={
            "playbook_id": "settlement_fail_recovery",
            "step_index": step_index,
            "tool": tool,
            "input": tool_input,
        },
    )


async def run(
    stage: ToolStage, event: EventEnvelope, state: BatchState | None = None
) -> tuple[list[Emission], BatchState]:
    state = state or BatchState(now=NOW)
    await stage.prepare([event], state)
    return await stage.handle(event, state), state


# --- built-in tools ---------------------------------------------------------------------------------


async def test_builtin_tool_runs_and_is_recorded(settings: Settings, packs: PackRegistry) -> None:
    [emission], state = await run(
        ToolStage(settings, packs), requested("reschedule_settlement", RESCHEDULE_INPUT)
    )

    expected_output = {
        "outcome": "succeeded",
        "trade_id": "TRD-20250603-00412",
        "business_days_late": 2,  # Wednesday and Thursday
        "new_settlement_date": "2025-06-06",
        "csdr_penalty_applies": True,
        "buy_in_due": False,
    }
    assert emission.event_type is EventType.TOOL_EXECUTION_COMPLETED
    duration_ms = emission.payload.pop("duration_ms")
    assert isinstance(duration_ms, float) and duration_ms >= 0
    assert emission.payload == {
        "execution_id": "evt-tool-request",
        "playbook_id": "settlement_fail_recovery",
        "step_index": 1,
        "tool": "reschedule_settlement",
        "outcome": "succeeded",
        "output": expected_output,
    }
    [row] = state._inserts["tool_executions"]
    assert row.pop("duration_ms") >= 0
    assert row == {
        "execution_id": "evt-tool-request",
        "tenant_id": "FIN_ACME",
        "exception_id": "EXC-1",
        "playbook_id": "settlement_fail_recovery",
        "step_index": 1,
        "tool_name": "reschedule_settlement",
        "tool_kind": "builtin",
        "input": RESCHEDULE_INPUT,
        "output": expected_output,
        "outcome": "succeeded",
        "error_type": None,
        "error_message": None,
        "executed_at": NOW,
    }
    assert list(state._inserts) == ["tool_executions"]


async def test_business_failure_is_a_failed_outcome_not_an_error(
    settings: Settings, packs: PackRegistry
) -> None:
    [emission], state = await run(
        ToolStage(settings, packs),
        requested("reschedule_settlement", {**RESCHEDULE_INPUT, "max_fail_days": 1}),
    )
    assert emission.payload["outcome"] == "failed"
    assert emission.payload["output"]["buy_in_due"] is True
    assert state._inserts["tool_executions"][0]["outcome"] == "failed"


@pytest.mark.parametrize(
    ("tool_input", "message"),
    [
        ({**RESCHEDULE_INPUT, "csd": "euroclear"}, "csd: 'euroclear' does not match"),
        (
            {k: v for k, v in RESCHEDULE_INPUT.items() if k != "trade_id"},
            r"\(input\): 'trade_id' is a required property",
        ),
        ({**RESCHEDULE_INPUT, "max_fail_days": 99}, "max_fail_days: 99 is greater than the maximum of 30"),
        ({**RESCHEDULE_INPUT, "extra": 1}, "Additional properties are not allowed"),
        ("not an object", "is not of type 'object'"),
    ],
)
async def test_invalid_input_raises_tool_input_error_from_handle(
    settings: Settings, packs: PackRegistry, tool_input: Any, message: str
) -> None:
    stage = ToolStage(settings, packs)
    event = requested("reschedule_settlement", tool_input)
    state = BatchState(now=NOW)
    await stage.prepare([event], state)  # prepare records the error; it never raises
    with pytest.raises(ToolInputError, match=message):
        await stage.handle(event, state)
    assert state._inserts == {}


async def test_a_bad_request_does_not_sink_the_rest_of_the_batch(
    settings: Settings, packs: PackRegistry
) -> None:
    stage = ToolStage(settings, packs)
    bad = requested("reschedule_settlement", {}, event_id="evt-bad")
    good = requested("reschedule_settlement", RESCHEDULE_INPUT, event_id="evt-good")
    state = BatchState(now=NOW)
    await stage.prepare([bad, good], state)
    with pytest.raises(ToolInputError):
        await stage.handle(bad, state)
    [emission] = await stage.handle(good, state)
    assert emission.payload["execution_id"] == "evt-good"
    assert [row["execution_id"] for row in state._inserts["tool_executions"]] == ["evt-good"]


async def test_tool_not_enabled_for_the_tenant(settings: Settings, packs: PackRegistry) -> None:
    # FIN_GLOBEX does not enable compare_trade_economics (its trade mismatches go to manual review).
    tool_input = {
        "trade_id": "TRD-1",
        "our_quantity": 100,
        "their_quantity": 100,
        "our_price": 1.0,
        "their_price": 1.0,
        "our_settlement_date": "2025-06-09",
        "their_settlement_date": "2025-06-09",
        "price_tolerance_bps": 5,
    }
    stage = ToolStage(settings, packs)
    with pytest.raises(ToolNotEnabledError, match="FIN_GLOBEX has not enabled tool compare_trade_economics"):
        await run(stage, requested("compare_trade_economics", tool_input, tenant_id="FIN_GLOBEX"))
    [emission], _ = await run(stage, requested("compare_trade_economics", tool_input))
    assert emission.payload["outcome"] == "succeeded"


async def test_tool_outside_the_pack_is_unexpected(settings: Settings, packs: PackRegistry) -> None:
    with pytest.raises(UnexpectedEventError, match="'launch_rockets' is not in the finance pack"):
        await run(ToolStage(settings, packs), requested("launch_rockets", {}))


# --- HTTP tools -------------------------------------------------------------------------------------

WEBHOOK_INPUT = {
    "exception_id": "EXC-1",
    "tenant_id": "FIN_HOOKS",
    "severity": "HIGH",
    "message": "Settlement fail re-instructed",
}


@pytest.fixture(scope="module")
def hooks_packs(packs: PackRegistry) -> PackRegistry:
    tenant = TenantPack(
        tenant_id="FIN_HOOKS",
        name="Hooks Test Tenant",
        domain="finance",
        enabled_tools=("notify_webhook", "reschedule_settlement"),
        tool_base_urls={"notify_webhook": HOOK_URL},
    )
    return packs.with_tenant(tenant)


Handler = Callable[[httpx.Request], httpx.Response]


MakeClient = Callable[[Handler], httpx.AsyncClient]


@pytest.fixture
async def http() -> AsyncIterator[MakeClient]:
    """Makes AsyncClients over MockTransport(handler); closes them after the test."""
    clients: list[httpx.AsyncClient] = []

    def make(handler: Handler) -> httpx.AsyncClient:
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def test_http_tool_200_json_succeeds(
    settings: Settings, hooks_packs: PackRegistry, http: MakeClient
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"delivered": True, "id": "hook-42"})

    stage = ToolStage(settings, hooks_packs, http_client=http(handler))
    [emission], state = await run(
        stage, requested("notify_webhook", WEBHOOK_INPUT, tenant_id="FIN_HOOKS", event_id="evt-hook-1")
    )

    [request] = seen
    assert request.method == "POST"
    assert str(request.url) == HOOK_URL
    assert request.headers["Idempotency-Key"] == "evt-hook-1"
    assert request.headers["Accept"] == "application/json"
    assert json.loads(request.content) == WEBHOOK_INPUT
    assert emission.payload["outcome"] == "succeeded"
    assert emission.payload["output"] == {"delivered": True, "id": "hook-42"}
    [row] = state._inserts["tool_executions"]
    assert (row["tool_kind"], row["outcome"], row["execution_id"]) == ("http", "succeeded", "evt-hook-1")


async def test_http_tool_may_report_a_failed_outcome(
    settings: Settings, hooks_packs: PackRegistry, http: MakeClient
) -> None:
    client = http(
        lambda request: httpx.Response(200, json={"outcome": "failed", "reason": "channel archived"})
    )
    [emission], _ = await run(
        ToolStage(settings, hooks_packs, http_client=client),
        requested("notify_webhook", WEBHOOK_INPUT, tenant_id="FIN_HOOKS"),
    )
    assert emission.payload["outcome"] == "failed"


async def test_http_tool_uses_the_pack_url_without_a_tenant_override(
    settings: Settings, packs: PackRegistry, http: MakeClient
) -> None:
    registry = packs.with_tenant(
        TenantPack(tenant_id="FIN_PLAIN", name="Plain", domain="finance", enabled_tools=("notify_webhook",))
    )
    urls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        urls.append(str(request.url))
        return httpx.Response(200, json={})

    await run(
        ToolStage(settings, registry, http_client=http(handler)),
        requested("notify_webhook", WEBHOOK_INPUT, tenant_id="FIN_PLAIN"),
    )
    assert urls == ["http://127.0.0.1:8099/webhook"]


def _raise(error: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    return handler


@pytest.mark.parametrize(
    ("handler", "error"),
    [
        (lambda request: httpx.Response(503, text="maintenance"), ToolUnavailableError),
        (lambda request: httpx.Response(429), ToolUnavailableError),
        (_raise(httpx.ConnectError("connection refused")), ToolUnavailableError),
        (_raise(httpx.ReadTimeout("slow")), StageTimeoutError),
    ],
    ids=["503", "429", "connect-error", "timeout"],
)
async def test_transient_http_tool_failures_are_raised_for_retry(
    settings: Settings, hooks_packs: PackRegistry, http: MakeClient, handler: Handler, error: type[Exception]
) -> None:
    stage = ToolStage(settings, hooks_packs, http_client=http(handler))
    event = requested("notify_webhook", WEBHOOK_INPUT, tenant_id="FIN_HOOKS")
    state = BatchState(now=NOW)
    await stage.prepare([event], state)
    with pytest.raises(error) as info:
        await stage.handle(event, state)
    assert type(info.value) is error
    assert info.value.retryable is True  # type: ignore[attr-defined]
    assert state._inserts == {}


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        (lambda request: httpx.Response(404, text="no such hook"), f"tool at {HOOK_URL} answered HTTP 404: no such hook"),
        (lambda request: httpx.Response(200, text="<html>ok</html>"), f"tool at {HOOK_URL} answered non-JSON"),
        (lambda request: httpx.Response(200, json=["not", "an", "object"]), "answered JSON list, not an object"),
    ],
    ids=["404", "non-json", "json-list"],
)
async def test_a_tool_that_answers_no_completes_the_step_as_failed(
    settings: Settings, hooks_packs: PackRegistry, http: MakeClient, handler: Handler, message: str
) -> None:
    stage = ToolStage(settings, hooks_packs, http_client=http(handler))
    event = requested("notify_webhook", WEBHOOK_INPUT, tenant_id="FIN_HOOKS")
    state = BatchState(now=NOW)
    await stage.prepare([event], state)
    [emission] = await stage.handle(event, state)
    assert emission.payload["outcome"] == "failed"
    assert message in emission.payload["output"]["error"]
    [execution] = state._inserts["tool_executions"]
    assert (execution["outcome"], execution["error_type"]) == ("failed", "tool_failed")
    assert message in execution["error_message"]


async def test_http_tool_input_is_validated_before_any_call(
    settings: Settings, hooks_packs: PackRegistry, http: MakeClient
) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json={})

    stage = ToolStage(settings, hooks_packs, http_client=http(handler))
    with pytest.raises(ToolInputError, match="severity: 'URGENT' is not one of"):
        await run(
            stage, requested("notify_webhook", {**WEBHOOK_INPUT, "severity": "URGENT"}, tenant_id="FIN_HOOKS")
        )
    assert calls == []
