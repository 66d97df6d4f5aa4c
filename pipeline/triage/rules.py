"""The deterministic rules backend: the type hint when it names a known type or alias, otherwise
keyword scoring over the description, otherwise the pack's fallback type."""

from __future__ import annotations

import re

from pipeline.packs import TenantView
from pipeline.triage.backend import TriageDecision, TriageInput

_HINT_CONFIDENCE = 0.95
_WORD = re.compile(r"[a-z0-9]+")


def canonical_type(tenant: TenantView, hint: str | None) -> str | None:
    """The pack's type id for a source system's hint ("settlement-failure" -> SETTLEMENT_FAIL)."""
    if not hint:
        return None
    normalised = _normalise_hint(hint)
    for name, spec in tenant.domain.exception_types.items():
        if normalised == name or normalised in {_normalise_hint(alias) for alias in spec.aliases}:
            return name
    return None


def _normalise_hint(hint: str) -> str:
    return "_".join(_WORD.findall(hint.lower())).upper()


class RulesBackend:
    name = "rules"
    model = "pack-rules"

    def classify(self, batch: list[TriageInput]) -> list[TriageDecision]:
        return [self.classify_one(item) for item in batch]

    def classify_one(self, item: TriageInput) -> TriageDecision:
        domain = item.tenant.domain
        known = canonical_type(item.tenant, item.type_hint)
        if known is not None:
            return TriageDecision(known, _HINT_CONFIDENCE, f"source type hint {item.type_hint!r} maps to {known}", self.name, self.model)
        text = " ".join(_WORD.findall(item.description.lower()))
        scores: dict[str, int] = {}
        for name, spec in domain.exception_types.items():
            hits = sum(1 for keyword in spec.keywords if _contains_phrase(text, keyword))
            if hits:
                scores[name] = hits
        if not scores:
            return TriageDecision(
                domain.fallback_type, 0.3, "no type hint and no keyword matched: fallback type", self.name, self.model
            )
        ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
        best, best_hits = ranked[0]
        runner_up = ranked[1][1] if len(ranked) > 1 else 0
        # More matched keywords and a clearer margin over the runner-up mean more confidence.
        confidence = min(0.9, 0.45 + 0.1 * best_hits + 0.1 * (best_hits - runner_up))
        rationale = f"{best_hits} keyword(s) of {best} in the description" + (
            f" (runner-up {ranked[1][0]} with {runner_up})" if runner_up else ""
        )
        return TriageDecision(best, round(confidence, 3), rationale, self.name, self.model)


def _contains_phrase(text: str, phrase: str) -> bool:
    words = " ".join(_WORD.findall(phrase.lower()))
    return bool(words) and f" {words} " in f" {text} "
