"""The `openai` triage backend against a real OpenAI-compatible server on loopback: llama-cpp-python's
server with SmolLM2-135M (see tests/integration/llama_server.py; `.ci/build-llama-wheel.sh` installs
both). SmolLM2 is a weak classifier: these tests check that its answers are schema-valid decisions
and that every failure mode falls back to the rules, not that it classifies well."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cluster.embedded import free_port
from pipeline.errors import StageTimeoutError
from pipeline.packs import PackRegistry, load_packs
from pipeline.triage import RulesBackend, TriageInput
from pipeline.triage.circuit_breaker import CircuitBreaker, CircuitState
from pipeline.triage.fallback import FallbackBackend
from pipeline.triage.openai_backend import ModelUnavailableError, OpenAIBackend, ResponseFormat
from tests.integration.llama_server import running_llama_server

pytestmark = pytest.mark.integration

MODEL_ID = "smollm2-135m"
# Generous: the server answers one request at a time (the queue counts against the timeout) and CI
# machines can be busy; ~1 s per call on 2 idle cores.
CALL_TIMEOUT_S = 120.0


class CountingTransport(httpx.HTTPTransport):
    """A real transport that counts the requests it is asked to send (connection attempts)."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return super().handle_request(request)


@pytest.fixture(scope="module")
def llama_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log_path: Path = tmp_path_factory.mktemp("llama-server") / "server.log"
    with running_llama_server(log_path, model_alias=MODEL_ID) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def packs() -> PackRegistry:
    return load_packs()


@pytest.fixture(scope="module")
def batch(packs: PackRegistry) -> list[TriageInput]:
    acme, meridian = packs.view("FIN_ACME"), packs.view("HC_MERIDIAN")
    return [
        TriageInput(
            acme,
            "EXC-F1",
            None,
            "STL FAIL: TRD-88412 DVP 50k AAPL @ DTC not settled on SD, cpty short",
            {"trade_id": "TRD-88412", "amount": 9100000, "currency": "USD"},
        ),
        TriageInput(
            acme,
            "EXC-F2",
            None,
            "price mismatch on bond trade - we booked 101.25, broker confirm says 101.52, USD 5mm face",
            {"amount": 5000000, "currency": "USD"},
        ),
        TriageInput(
            meridian,
            "CLM-H1",
            None,
            "no PA on file for MRI lumbar 72148, DOS 06/03",
            {"billed_amount": 2100, "claim_id": "CLM-88120"},
        ),
        TriageInput(
            meridian, "CLM-H2", "LICENSE", "pharmacist's license expired, claims he dispensed need review", {}
        ),
    ]


def make_backend(
    base_url: str,
    response_format: ResponseFormat,
    *,
    timeout_s: float = CALL_TIMEOUT_S,
    max_concurrency: int = 2,
    breaker: CircuitBreaker | None = None,
    client: httpx.Client | None = None,
) -> OpenAIBackend:
    return OpenAIBackend(
        base_url=base_url,
        model=MODEL_ID,
        api_key=None,
        response_format=response_format,
        timeout_s=timeout_s,
        max_concurrency=max_concurrency,
        breaker=breaker or CircuitBreaker(failure_threshold=100, reset_after_s=60),
        client=client,
    )


# First, before the module's llama server starts: it needs none, and must not compete with it.
def test_dead_server_falls_back_and_the_breaker_stops_connecting(batch: list[TriageInput]) -> None:
    dead_url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    transport = CountingTransport()
    breaker = CircuitBreaker(failure_threshold=3, reset_after_s=60)
    items = batch * 2
    with httpx.Client(transport=transport) as client:
        with make_backend(
            dead_url, "json_object", max_concurrency=1, breaker=breaker, client=client
        ) as backend:
            chain = FallbackBackend([backend, RulesBackend()])
            assert chain.classify(items) == RulesBackend().classify(items)
            assert transport.requests == 3  # then the circuit opened: items 4..8 never tried
            assert breaker.state is CircuitState.OPEN

            started = time.monotonic()
            with pytest.raises(ModelUnavailableError, match="circuit open"):
                backend.classify(items)
            decisions = chain.classify(items)
            elapsed = time.monotonic() - started

    assert transport.requests == 3  # no connection attempted while open
    assert decisions == RulesBackend().classify(items)
    assert elapsed < 2.0, f"an open circuit should fail fast, took {elapsed:.3f} s"


def test_json_object_form_gives_schema_valid_decisions(llama_url: str, batch: list[TriageInput]) -> None:
    with make_backend(llama_url, "json_object") as backend:
        started = time.monotonic()
        decisions = FallbackBackend([backend, RulesBackend()]).classify(batch)
        elapsed = time.monotonic() - started

    # Nothing fell back: every item has a schema-valid answer from the model (right or not).
    assert [(d.backend, d.model) for d in decisions] == [("openai", MODEL_ID)] * len(batch)
    for item, decision in zip(batch, decisions, strict=True):
        assert decision.exception_type in item.tenant.domain.exception_types
        assert 0 <= decision.confidence <= 1
        assert isinstance(decision.rationale, str) and len(decision.rationale) <= 300
    print(f"\nllama-cpp-python + SmolLM2: {len(batch)} triage calls in {elapsed:.2f} s")


def test_json_schema_form_is_refused_by_llama_cpp_python_and_rules_answer(
    llama_url: str, batch: list[TriageInput]
) -> None:
    with make_backend(llama_url, "json_schema") as backend:
        assert backend.classify_partial(batch) == [None] * len(batch)
        with pytest.raises(ModelUnavailableError, match="HTTP 500"):
            backend.classify(batch[:1])
        decisions = FallbackBackend([backend, RulesBackend()]).classify(batch)

    assert decisions == RulesBackend().classify(batch)
    assert {(d.backend, d.model) for d in decisions} == {("rules", "pack-rules")}


# Last: the server goes on generating for the request whose client gave up.
def test_timeout_falls_back_to_rules(llama_url: str, batch: list[TriageInput]) -> None:
    with make_backend(llama_url, "json_object", timeout_s=0.001, max_concurrency=1) as backend:
        with pytest.raises(StageTimeoutError):
            backend.classify(batch[:1])
        decisions = FallbackBackend([backend, RulesBackend()]).classify(batch[:2])

    assert decisions == RulesBackend().classify(batch[:2])
