"""The interface every triage backend implements (rules today; embedded model and OpenAI-compatible
LLMs plug in here). A backend classifies a *batch*: model backends amortise their cost over it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.packs import TenantView


@dataclass(frozen=True)
class TriageInput:
    tenant: TenantView
    exception_id: str
    type_hint: str | None
    description: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TriageDecision:
    exception_type: str
    confidence: float
    rationale: str
    backend: str
    model: str


class TriageBackend(Protocol):
    name: str

    def classify(self, batch: list[TriageInput]) -> list[TriageDecision]:
        """One decision per input, same order. Raises TransientError when the backend is unavailable."""
        ...
