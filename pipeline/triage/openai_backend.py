"""The `openai` triage backend: one chat completion per exception against any OpenAI-compatible
endpoint (Ray Serve LLM / vLLM, a llama.cpp server, a hosted API), with structured output.

The system prompt lists the tenant domain's exception types (id and a one-line description) and the
JSON schema of the answer; the user message is the exception (type hint, description, a few
attributes). The endpoint is asked to constrain its output to the schema:

- `json_schema`: `{"type": "json_schema", "json_schema": {"name", "schema", "strict": true}}`, the
  OpenAI / vLLM / Ray Serve LLM / llama.cpp `llama-server` form;
- `json_object`: `{"type": "json_object", "schema": ...}`, the form llama-cpp-python's server takes
  (it answers HTTP 500 to the other one).

Whatever the endpoint promises, every answer is validated here against the schema; an answer that
is not valid JSON, breaks the schema or names a type the domain lacks is a failure, as are HTTP
errors and timeouts. A failed item is never guessed: `classify_partial` returns None for it (so a
`FallbackBackend` re-classifies only those items) and `classify` raises a `TransientError`. A
`CircuitBreaker` shared by all calls makes an endpoint that keeps failing cost nothing while open.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, cast

import httpx
from jsonschema import Draft202012Validator

from pipeline.errors import StageTimeoutError, TransientError
from pipeline.packs import DomainPack
from pipeline.triage.backend import TriageDecision, TriageInput
from pipeline.triage.circuit_breaker import CircuitBreaker

log = logging.getLogger(__name__)

ResponseFormat = Literal["json_schema", "json_object"]

RATIONALE_MAX_CHARS = 300
_DESCRIPTION_MAX_CHARS = 160  # per type in the system prompt: keeps it small for small models
_INPUT_MAX_CHARS = 2000  # the exception's description in the user message
_MAX_ATTRIBUTES = 8
_ATTRIBUTE_MAX_CHARS = 80


class ModelUnavailableError(TransientError):
    """The model endpoint could not be reached, answered 5xx/429, or its circuit breaker is open after
    repeated failures. Triage falls back to the next backend meanwhile. Check the endpoint
    (`SENTINAI_TRIAGE__OPENAI__BASE_URL`), its logs and its capacity."""

    error_type = "model_unavailable"


class ModelRequestRejectedError(ModelUnavailableError):
    """The endpoint answered 4xx: the request does not suit it. Check the model id, the API key and
    the response format (llama-cpp-python's server needs `json_object`; OpenAI and vLLM take
    `json_schema`). Triage falls back to the next backend meanwhile."""

    error_type = "model_request_rejected"


class ModelAnswerError(TransientError):
    """The model answered, but not with a valid decision (not JSON, outside the schema, or a type the
    domain lacks); the answer is never used. Occasional ones are expected from small models; if
    they are frequent, use a stronger model or an endpoint that enforces the schema."""

    error_type = "model_answer_invalid"


@dataclass(frozen=True)
class _DomainPrompt:
    system: str
    schema: dict[str, Any]
    validator: Draft202012Validator


class OpenAIBackend:
    """Triage through an OpenAI-compatible `/chat/completions` endpoint.

    - `base_url`: the API root, the requests go to `{base_url}/chat/completions`
      (e.g. `http://127.0.0.1:8000/v1`).
    - `model`: the model id sent in each request and recorded in each decision.
    - `api_key`: sent as a bearer token when set.
    - `response_format`: how structured output is requested (see the module docstring).
    - `timeout_s`: per call, for connecting and for each read and write; the endpoints answer in
      one piece, so in practice for the whole call. A timeout is a failure (StageTimeoutError).
    - `max_concurrency`: calls in flight at once, across all concurrent `classify` calls.
    - `breaker`: counts consecutive failed calls; while open, items fail at once without HTTP.
    - `client`: an httpx client to use (tests, shared pools); otherwise one is created and closed
      by `close()`.
    - `max_tokens`: room for the longest schema-valid answer: a 300-character rationale can take
      ~300 tokens when it is all digits and codes, and a cut-off answer is invalid JSON.

    A server that answers one request at a time (llama-cpp-python) queues the others, and the
    queueing counts against `timeout_s`: give it `max_concurrency=1` or a timeout that covers it.

    Thread-safe. Every failure of an item (transport, HTTP status, timeout, invalid answer, open
    circuit) counts against the breaker and is never turned into a guess."""

    name = "openai"

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None,
        response_format: ResponseFormat,
        timeout_s: float,
        max_concurrency: int,
        breaker: CircuitBreaker,
        client: httpx.Client | None = None,
        max_tokens: int = 400,
        temperature: float = 0.0,
    ) -> None:
        if response_format not in ("json_schema", "json_object"):
            raise ValueError(f"response_format must be json_schema or json_object, not {response_format!r}")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        self.model = model
        self.response_format = response_format
        self.breaker = breaker
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = httpx.Timeout(timeout_s)
        self._timeout_s = timeout_s
        self._max_tokens = max_tokens
        self._temperature = temperature
        self._owns_client = client is None
        self._client = client or httpx.Client(
            timeout=self._timeout,
            limits=httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency),
        )
        self._executor = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="openai-triage")
        self._prompts: dict[tuple[str, str], _DomainPrompt] = {}
        self._prompts_lock = threading.Lock()

    # --- public -------------------------------------------------------------------------------

    def classify(self, batch: list[TriageInput]) -> list[TriageDecision]:
        """One decision per input, same order. Raises the failure of the first failed item
        (ModelUnavailableError, ModelRequestRejectedError, StageTimeoutError, ModelAnswerError),
        its message counting all of them, when any item failed."""
        outcomes = self._outcomes(batch)
        failures = [outcome for outcome in outcomes if isinstance(outcome, TransientError)]
        if failures:
            first = failures[0]
            raise type(first)(f"{_summary(failures, len(batch))}; first: {first}") from first
        return [outcome for outcome in outcomes if isinstance(outcome, TriageDecision)]

    def classify_partial(self, batch: list[TriageInput]) -> list[TriageDecision | None]:
        """One entry per input, same order: the decision, or None where the call failed (the
        failures are logged at INFO, counted by error type). Raises nothing for failed items."""
        outcomes = self._outcomes(batch)
        failures = [outcome for outcome in outcomes if isinstance(outcome, TransientError)]
        if failures:
            log.info(
                "openai triage (model %s at %s): %s; first: %s",
                self.model,
                self._url,
                _summary(failures, len(batch)),
                failures[0],
            )
        return [outcome if isinstance(outcome, TriageDecision) else None for outcome in outcomes]

    def close(self) -> None:
        """Stop the worker threads and close the HTTP client if this backend created it."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- one call -----------------------------------------------------------------------------

    def _outcomes(self, batch: list[TriageInput]) -> list[TriageDecision | TransientError]:
        if not batch:
            return []
        if len(batch) == 1:
            return [self._classify_one(batch[0])]
        return list(self._executor.map(self._classify_one, batch))

    def _classify_one(self, item: TriageInput) -> TriageDecision | TransientError:
        if not self.breaker.allow():
            wait_s = self.breaker.retry_after_s()
            when = f"next trial call in {wait_s:.1f} s" if wait_s > 0 else "a trial call is in flight"
            return ModelUnavailableError(f"circuit open after repeated failures; {when}")
        try:
            decision = self._call(item)
        except TransientError as error:
            self.breaker.record_failure()
            return error
        except BaseException:
            # A bug (or an interrupt): do not leave a half-open trial marked in flight for ever.
            self.breaker.record_failure()
            raise
        self.breaker.record_success()
        return decision

    def _call(self, item: TriageInput) -> TriageDecision:
        prompt = self._prompt_for(item.tenant.domain)
        body = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": prompt.system},
                {"role": "user", "content": user_message(item)},
            ],
            "response_format": self._response_format(prompt.schema),
            "max_tokens": self._max_tokens,
            "temperature": self._temperature,
        }
        started = time.monotonic()
        try:
            response = self._client.post(self._url, json=body, headers=self._headers, timeout=self._timeout)
        except httpx.TimeoutException as error:
            raise StageTimeoutError(f"no answer from {self._url} within {self._timeout_s} s") from error
        except httpx.TransportError as error:
            raise ModelUnavailableError(
                f"{self._url} unreachable: {type(error).__name__}: {error}"
            ) from error
        log.debug("openai triage call %s took %.3f s", item.exception_id, time.monotonic() - started)
        if response.status_code != 200:
            detail = _snippet(response.text)
            if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                raise ModelRequestRejectedError(f"{self._url} answered HTTP {response.status_code}: {detail}")
            raise ModelUnavailableError(f"{self._url} answered HTTP {response.status_code}: {detail}")
        answer = _parse_answer(response, prompt.validator)
        return TriageDecision(
            exception_type=answer["exception_type"],
            confidence=round(float(answer["confidence"]), 3),
            rationale=answer["rationale"],
            backend=self.name,
            model=self.model,
        )

    def _response_format(self, schema: dict[str, Any]) -> dict[str, Any]:
        if self.response_format == "json_schema":
            return {
                "type": "json_schema",
                "json_schema": {"name": "triage", "schema": schema, "strict": True},
            }
        return {"type": "json_object", "schema": schema}

    def _prompt_for(self, domain: DomainPack) -> _DomainPrompt:
        key = (domain.pack, domain.version)
        prompt = self._prompts.get(key)
        if prompt is None:
            built = _build_prompt(domain)
            with self._prompts_lock:
                prompt = self._prompts.setdefault(key, built)
        return prompt


# --- prompts and answers ----------------------------------------------------------------------


def answer_schema(domain: DomainPack) -> dict[str, Any]:
    """The JSON schema of a triage answer for this domain."""
    return {
        "type": "object",
        "properties": {
            "exception_type": {"type": "string", "enum": list(domain.exception_types)},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "rationale": {"type": "string", "maxLength": RATIONALE_MAX_CHARS},
        },
        "required": ["exception_type", "confidence", "rationale"],
        "additionalProperties": False,
    }


def system_prompt(domain: DomainPack) -> str:
    """The instructions: the domain's types (id and a shortened description) and the answer's schema."""
    types = "\n".join(
        f"- {name}: {_shorten(spec.description, _DESCRIPTION_MAX_CHARS)}"
        for name, spec in domain.exception_types.items()
    )
    return (
        f"You classify {domain.pack} operations exceptions. Pick exactly one exception type:\n"
        f"{types}\n"
        f"Use {domain.fallback_type} when no other type fits.\n"
        "Answer with one JSON object and nothing else: exception_type (one of the ids above), "
        "confidence (0 to 1) and rationale (why, in at most 25 words). "
        f"JSON schema of the answer: {json.dumps(answer_schema(domain), separators=(',', ':'))}"
    )


def _build_prompt(domain: DomainPack) -> _DomainPrompt:
    schema = answer_schema(domain)
    return _DomainPrompt(system=system_prompt(domain), schema=schema, validator=Draft202012Validator(schema))


def user_message(item: TriageInput) -> str:
    """What the model reads about one exception: the hint, the description and a few scalar
    attributes, compactly."""
    lines = []
    if item.type_hint:
        lines.append(f"Source type hint: {_shorten(item.type_hint, _ATTRIBUTE_MAX_CHARS)}")
    lines.append(f"Description: {_shorten(item.description, _INPUT_MAX_CHARS) or '(none)'}")
    attributes = {
        key: value if not isinstance(value, str) else _shorten(value, _ATTRIBUTE_MAX_CHARS)
        for key, value in list(item.attributes.items())[:_MAX_ATTRIBUTES]
        if isinstance(value, str | int | float | bool) or value is None
    }
    if attributes:
        lines.append(f"Attributes: {json.dumps(attributes, separators=(',', ':'), ensure_ascii=False)}")
    return "\n".join(lines)


def _parse_answer(response: httpx.Response, validator: Draft202012Validator) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as error:
        raise ModelAnswerError(f"response body is not JSON: {_snippet(response.text)}") from error
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ModelAnswerError(f"response has no choices: {_snippet(response.text)}")
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        raise ModelAnswerError(f"first choice has no text content: {_snippet(json.dumps(choices[0]))}")
    try:
        answer = json.loads(content, parse_constant=_reject_constant)
    except ValueError as error:
        finish = choices[0].get("finish_reason")
        raise ModelAnswerError(f"answer is not JSON (finish_reason {finish}): {_snippet(content)}") from error
    errors = sorted(validator.iter_errors(answer), key=lambda e: list(e.absolute_path))
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path) or "(root)"
        raise ModelAnswerError(
            f"answer breaks the schema at {where}: {errors[0].message}: {_snippet(content)}"
        )
    return cast(dict[str, Any], answer)


def _reject_constant(name: str) -> float:
    # NaN passes `minimum`/`maximum` checks (every comparison with it is false): refuse it outright.
    raise ValueError(f"{name} is not a number")


def _summary(failures: list[TransientError], total: int) -> str:
    counts = Counter(failure.error_type for failure in failures)
    by_type = ", ".join(f"{error_type} x{count}" for error_type, count in counts.most_common())
    return f"{len(failures)} of {total} item(s) failed ({by_type})"


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _snippet(text: str) -> str:
    return _shorten(text, 200)
