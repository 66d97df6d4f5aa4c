"""pipeline.triage.openai_backend and circuit_breaker against httpx.MockTransport: the request
shapes, answer validation (a bad answer is a failure, never a guess), the fallback to the rules
backend, bounded concurrency and the circuit breaker (injected clock)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from pipeline.errors import StageTimeoutError, TransientError
from pipeline.packs import PackRegistry, TenantView
from pipeline.triage import RulesBackend, TriageInput
from pipeline.triage.circuit_breaker import CircuitBreaker, CircuitState
from pipeline.triage.fallback import FallbackBackend
from pipeline.triage.openai_backend import (
    ModelAnswerError,
    ModelRequestRejectedError,
    ModelUnavailableError,
    OpenAIBackend,
    answer_schema,
)

Handler = Callable[[httpx.Request], httpx.Response]
BASE_URL = "http://model.test/v1"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeEndpoint:
    """A chat-completions endpoint: records every request; `handler` decides the answer."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []
        self._lock = threading.Lock()

    @property
    def calls(self) -> int:
        return len(self.requests)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(request.content) for request in self.requests]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
        return self.handler(request)


def completion(content: Any, status: int = 200) -> httpx.Response:
    """A chat completion whose first choice says `content` (a dict is sent as its JSON text)."""
    text = json.dumps(content) if isinstance(content, dict) else content
    return httpx.Response(
        status,
        json={
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ]
        },
    )


def answering(exception_type: str, confidence: float = 0.8, rationale: str = "matches") -> Handler:
    return lambda request: completion(
        {"exception_type": exception_type, "confidence": confidence, "rationale": rationale}
    )


@pytest.fixture(scope="module")
def acme(packs: PackRegistry) -> TenantView:
    return packs.view("FIN_ACME")


@pytest.fixture(scope="module")
def meridian(packs: PackRegistry) -> TenantView:
    return packs.view("HC_MERIDIAN")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_backend(clock: FakeClock) -> Iterator[Callable[..., tuple[OpenAIBackend, FakeEndpoint]]]:
    backends: list[OpenAIBackend] = []

    def make(
        handler: Handler,
        *,
        response_format: str = "json_schema",
        max_concurrency: int = 1,
        failure_threshold: int = 100,
        reset_after_s: float = 30.0,
        api_key: str | None = None,
    ) -> tuple[OpenAIBackend, FakeEndpoint]:
        endpoint = FakeEndpoint(handler)
        backend = OpenAIBackend(
            base_url=BASE_URL,
            model="triage-test",
            api_key=api_key,
            response_format=response_format,  # type: ignore[arg-type]
            timeout_s=2.5,
            max_concurrency=max_concurrency,
            breaker=CircuitBreaker(failure_threshold, reset_after_s, clock=clock),
            client=httpx.Client(transport=httpx.MockTransport(endpoint)),
        )
        backends.append(backend)
        return backend, endpoint

    yield make
    for backend in backends:
        backend.close()


def settlement_fail(tenant: TenantView, exception_id: str = "EXC-1") -> TriageInput:
    return TriageInput(
        tenant,
        exception_id,
        None,
        "STL FAIL: TRD-88412 DVP 50k AAPL @ DTC not settled on SD, cpty short",
        {"trade_id": "TRD-88412", "amount": 9100000, "currency": "USD", "nested": {"not": "sent"}},
    )


# --- requests -----------------------------------------------------------------------------------


def test_json_schema_form_is_the_openai_vllm_shape(make_backend: Any, acme: TenantView) -> None:
    backend, endpoint = make_backend(answering("SETTLEMENT_FAIL"), api_key="sk-test")
    backend.classify([settlement_fail(acme)])

    (request,) = endpoint.requests
    assert (request.method, str(request.url)) == ("POST", f"{BASE_URL}/chat/completions")
    assert request.headers["authorization"] == "Bearer sk-test"
    body = json.loads(request.content)
    assert body["model"] == "triage-test"
    assert (body["max_tokens"], body["temperature"]) == (400, 0.0)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "triage", "schema": answer_schema(acme.domain), "strict": True},
    }
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["exception_type"]["enum"] == list(acme.domain.exception_types)
    assert schema["required"] == ["exception_type", "confidence", "rationale"]
    # The per-call timeout travels with the request even on an injected client.
    assert request.extensions["timeout"]["read"] == 2.5


def test_json_object_form_is_the_llama_cpp_python_shape(make_backend: Any, meridian: TenantView) -> None:
    backend, endpoint = make_backend(answering("MISSING_AUTHORIZATION"), response_format="json_object")
    backend.classify([TriageInput(meridian, "CLM-1", None, "MRI billed without prior auth on file")])

    (body,) = endpoint.bodies()
    assert body["response_format"] == {"type": "json_object", "schema": answer_schema(meridian.domain)}
    assert "authorization" not in endpoint.requests[0].headers


def test_prompt_lists_the_domain_types_and_the_exception(make_backend: Any, acme: TenantView) -> None:
    backend, endpoint = make_backend(answering("SETTLEMENT_FAIL"))
    backend.classify(
        [TriageInput(acme, "EXC-1", "stl-fail", "cpty short on DVP", {"amount": 5, "nested": [1]})]
    )

    system, user = (message["content"] for message in endpoint.bodies()[0]["messages"])
    for type_name in acme.domain.exception_types:
        assert f"- {type_name}: " in system
    assert json.dumps(answer_schema(acme.domain), separators=(",", ":")) in system
    assert user == 'Source type hint: stl-fail\nDescription: cpty short on DVP\nAttributes: {"amount":5}'


# --- answers ------------------------------------------------------------------------------------


def test_valid_answer_becomes_a_decision(make_backend: Any, acme: TenantView) -> None:
    backend, _ = make_backend(answering("SETTLEMENT_FAIL", 0.8766, "DVP not settled on SD"))
    (decision,) = backend.classify([settlement_fail(acme)])
    assert decision.exception_type == "SETTLEMENT_FAIL"
    assert decision.confidence == 0.877
    assert decision.rationale == "DVP not settled on SD"
    assert (decision.backend, decision.model) == ("openai", "triage-test")


def _answer(**changes: Any) -> dict[str, Any]:
    answer = {"exception_type": "SETTLEMENT_FAIL", "confidence": 0.9, "rationale": "fail"}
    answer.update(changes)
    return {key: value for key, value in answer.items() if value is not None}


def _raise(error: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    return handler


BAD_ENDPOINTS: dict[str, tuple[Handler, type[TransientError]]] = {
    "malformed JSON": (lambda r: completion('{"exception_type": "SETTLEMENT_FAIL", '), ModelAnswerError),
    "prose around JSON": (lambda r: completion(f"Sure! {json.dumps(_answer())}"), ModelAnswerError),
    "unknown type": (lambda r: completion(_answer(exception_type="MADE_UP")), ModelAnswerError),
    "other domain's type": (
        lambda r: completion(_answer(exception_type="DUPLICATE_CLAIM")),
        ModelAnswerError,
    ),
    "type not a string": (lambda r: completion(_answer(exception_type=3)), ModelAnswerError),
    "extra field": (lambda r: completion(_answer(severity="HIGH")), ModelAnswerError),
    "missing field": (lambda r: completion(_answer(rationale=None)), ModelAnswerError),
    "confidence 1.5": (lambda r: completion(_answer(confidence=1.5)), ModelAnswerError),
    "confidence as text": (lambda r: completion(_answer(confidence="0.9")), ModelAnswerError),
    "confidence true": (lambda r: completion(_answer(confidence=True)), ModelAnswerError),
    "confidence NaN": (
        lambda r: completion('{"exception_type": "SETTLEMENT_FAIL", "confidence": NaN, "rationale": "x"}'),
        ModelAnswerError,
    ),
    "rationale too long": (lambda r: completion(_answer(rationale="x" * 301)), ModelAnswerError),
    "answer is a list": (lambda r: completion(json.dumps([_answer()])), ModelAnswerError),
    "no choices": (lambda r: httpx.Response(200, json={"choices": []}), ModelAnswerError),
    "choices missing": (lambda r: httpx.Response(200, json={"object": "chat.completion"}), ModelAnswerError),
    "null content": (lambda r: completion(None), ModelAnswerError),
    "body not JSON": (lambda r: httpx.Response(200, text="<html>gateway</html>"), ModelAnswerError),
    "HTTP 500": (lambda r: httpx.Response(500, json={"error": "boom"}), ModelUnavailableError),
    "HTTP 503": (lambda r: httpx.Response(503, text="overloaded"), ModelUnavailableError),
    "HTTP 429": (lambda r: httpx.Response(429, text="slow down"), ModelUnavailableError),
    "HTTP 400": (lambda r: httpx.Response(400, json={"error": "bad schema"}), ModelRequestRejectedError),
    "HTTP 401": (lambda r: httpx.Response(401, json={"error": "bad key"}), ModelRequestRejectedError),
    "read timeout": (_raise(httpx.ReadTimeout("timed out")), StageTimeoutError),
    "connect timeout": (_raise(httpx.ConnectTimeout("timed out")), StageTimeoutError),
    "connection refused": (_raise(httpx.ConnectError("refused")), ModelUnavailableError),
    "connection dropped": (_raise(httpx.RemoteProtocolError("peer closed")), ModelUnavailableError),
}


@pytest.mark.parametrize("case", list(BAD_ENDPOINTS))
def test_a_failed_call_is_never_trusted(make_backend: Any, acme: TenantView, case: str) -> None:
    handler, error_class = BAD_ENDPOINTS[case]
    backend, _ = make_backend(handler)
    item = settlement_fail(acme)

    assert backend.classify_partial([item]) == [None]
    with pytest.raises(error_class) as raised:
        backend.classify([item])
    assert type(raised.value) is error_class
    assert raised.value.retryable
    assert "1 of 1 item(s) failed" in str(raised.value)

    # The chain answers from the next backend: exactly what the rules say, attributed to rules.
    (decision,) = FallbackBackend([backend, RulesBackend()]).classify([item])
    assert decision == RulesBackend().classify_one(item)
    assert (decision.backend, decision.model) == ("rules", "pack-rules")


def test_only_the_failed_items_fall_back(
    make_backend: Any, acme: TenantView, caplog: pytest.LogCaptureFixture
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        user = json.loads(request.content)["messages"][1]["content"]
        if "broken" in user:
            return completion('{"exception_type": "CASH_BREAK"')  # cut off
        return completion(_answer(exception_type="CASH_BREAK"))

    backend, endpoint = make_backend(handler, max_concurrency=2)
    batch = [
        TriageInput(acme, "EXC-1", None, "nostro break on the statement"),
        TriageInput(acme, "EXC-2", None, "broken: fail to deliver, cpty short of securities"),
        TriageInput(acme, "EXC-3", None, "cash ledger vs statement differs"),
    ]
    with caplog.at_level(logging.INFO, logger="pipeline.triage.openai_backend"):
        decisions = FallbackBackend([backend, RulesBackend()]).classify(batch)

    assert endpoint.calls == 3  # the failed item is not asked again
    assert [(d.exception_type, d.backend) for d in decisions] == [
        ("CASH_BREAK", "openai"),
        (RulesBackend().classify_one(batch[1]).exception_type, "rules"),
        ("CASH_BREAK", "openai"),
    ]
    assert "1 of 3 item(s) failed (model_answer_invalid x1)" in caplog.text


def test_classify_names_every_failure(make_backend: Any, acme: TenantView) -> None:
    answers = iter([httpx.ReadTimeout("slow"), None, None])

    def handler(request: httpx.Request) -> httpx.Response:
        error = next(answers)
        if error is not None:
            raise error
        return httpx.Response(500, text="boom")

    backend, _ = make_backend(handler)
    with pytest.raises(
        StageTimeoutError, match=r"3 of 3 item\(s\) failed \(model_unavailable x2, timeout x1\)"
    ):
        backend.classify([settlement_fail(acme, f"EXC-{i}") for i in range(3)])


def test_empty_batch_makes_no_call(make_backend: Any) -> None:
    backend, endpoint = make_backend(answering("SETTLEMENT_FAIL"))
    assert backend.classify([]) == []
    assert endpoint.calls == 0


# --- concurrency --------------------------------------------------------------------------------


def test_concurrency_is_bounded_across_callers(make_backend: Any, acme: TenantView) -> None:
    in_flight = 0
    most = 0
    lock = threading.Lock()
    # Each call waits for a second one to be in flight: proves 2 run at once without any sleep.
    pair = threading.Barrier(2, timeout=10)

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        try:
            pair.wait()
            return completion(_answer())
        finally:
            with lock:
                in_flight -= 1

    backend, endpoint = make_backend(handler, max_concurrency=2)
    results: list[int] = []

    def caller(prefix: str) -> None:
        results.append(len(backend.classify([settlement_fail(acme, f"{prefix}-{i}") for i in range(6)])))

    callers = [threading.Thread(target=caller, args=(name,)) for name in ("A", "B")]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join(timeout=30)

    assert results == [6, 6]
    assert endpoint.calls == 12
    assert most == 2


# --- circuit breaker ----------------------------------------------------------------------------


def test_breaker_opens_then_fails_fast_without_http(
    make_backend: Any, acme: TenantView, clock: FakeClock
) -> None:
    backend, endpoint = make_backend(lambda r: httpx.Response(500, text="down"), failure_threshold=3)
    batch = [settlement_fail(acme, f"EXC-{i}") for i in range(5)]

    assert backend.classify_partial(batch) == [None] * 5
    assert endpoint.calls == 3  # the 4th and 5th item met an open circuit
    assert backend.breaker.state is CircuitState.OPEN

    clock.now += 29.9
    with pytest.raises(ModelUnavailableError, match="circuit open") as raised:
        backend.classify(batch)
    assert raised.value.error_type == "model_unavailable"
    assert endpoint.calls == 3
    decisions = FallbackBackend([backend, RulesBackend()]).classify(batch)
    assert {d.backend for d in decisions} == {"rules"}
    assert endpoint.calls == 3


def test_breaker_half_opens_after_reset_and_closes_on_success(
    make_backend: Any, acme: TenantView, clock: FakeClock
) -> None:
    failing = True

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, text="down") if failing else completion(_answer())

    backend, endpoint = make_backend(handler, failure_threshold=2, reset_after_s=30)
    batch = [settlement_fail(acme, f"EXC-{i}") for i in range(3)]
    backend.classify_partial(batch)
    assert (endpoint.calls, backend.breaker.state) == (2, CircuitState.OPEN)

    # Half-open: one trial call; it fails, so the circuit opens again for another 30 s.
    clock.now += 30
    assert backend.breaker.state is CircuitState.HALF_OPEN
    assert backend.classify_partial(batch) == [None] * 3
    assert (endpoint.calls, backend.breaker.state) == (3, CircuitState.OPEN)
    clock.now += 29
    backend.classify_partial(batch)
    assert endpoint.calls == 3

    # The endpoint heals: the next trial succeeds, closes the circuit, the rest go through.
    failing = False
    clock.now += 1
    decisions = backend.classify(batch)
    assert [d.backend for d in decisions] == ["openai"] * 3
    assert (endpoint.calls, backend.breaker.state) == (6, CircuitState.CLOSED)


def test_breaker_counts_consecutive_failures_only() -> None:
    breaker = CircuitBreaker(failure_threshold=3, reset_after_s=10, clock=FakeClock())
    for _ in range(2):
        breaker.record_failure()
    breaker.record_success()
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state is CircuitState.CLOSED and breaker.allow()
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN and not breaker.allow()


def test_half_open_lets_exactly_one_trial_through() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=10, clock=clock)
    breaker.record_failure()
    assert breaker.retry_after_s() == 10
    clock.now += 10
    assert breaker.allow()  # the trial
    assert not breaker.allow()  # everyone else waits for its outcome
    breaker.record_success()
    assert breaker.state is CircuitState.CLOSED
    assert breaker.allow() and breaker.allow()


@pytest.mark.parametrize(("threshold", "state"), [(800, CircuitState.OPEN), (801, CircuitState.CLOSED)])
def test_breaker_counts_concurrent_failures_exactly(threshold: int, state: CircuitState) -> None:
    breaker = CircuitBreaker(failure_threshold=threshold, reset_after_s=10, clock=FakeClock())
    start = threading.Barrier(8)

    def fail_many() -> None:
        start.wait()
        for _ in range(100):
            breaker.record_failure()

    threads = [threading.Thread(target=fail_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert breaker.state is state  # 800 failures, none lost
