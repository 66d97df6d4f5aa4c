"""The deterministic rules backend: the type hint when it names a known type or alias, otherwise
keyword scoring over the description, otherwise the pack's fallback type."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.packs import DomainPack, TenantView
from pipeline.triage.backend import TriageDecision, TriageInput

_HINT_CONFIDENCE = 0.95
_WORD = re.compile(r"[a-z0-9]+")


def canonical_type(tenant: TenantView, hint: str | None) -> str | None:
    """The pack's type id for a source system's hint ("settlement-failure" -> SETTLEMENT_FAIL)."""
    if not hint:
        return None
    return _rules_of(tenant.domain).type_by_hint.get(_normalise_hint(hint))


def _normalise_hint(hint: str) -> str:
    return "_".join(_WORD.findall(hint.lower())).upper()


def _lower_words(text: str) -> str:
    """The text's words, lower case, one space apart: keywords and descriptions are compared so."""
    return " ".join(_WORD.findall(text.lower()))


@dataclass(frozen=True)
class _DomainRules:
    """A domain pack's type names, aliases and keywords in the form events are compared in, worked out
    once per pack: normalising every alias and keyword again for every event was a quarter of the
    triage pool's CPU."""

    type_by_hint: dict[str, str]  # a normalised name or alias -> the first type (pack order) it names
    keywords: tuple[tuple[str, tuple[str, ...]], ...]  # (type, its keywords as " word word ")

    @classmethod
    def of(cls, domain: DomainPack) -> _DomainRules:
        type_by_hint: dict[str, str] = {}
        for name, spec in domain.exception_types.items():
            for hint in (name, *(_normalise_hint(alias) for alias in spec.aliases)):
                type_by_hint.setdefault(hint, name)
        keywords = tuple(
            (name, tuple(f" {words} " for words in map(_lower_words, spec.keywords) if words))
            for name, spec in domain.exception_types.items()
        )
        return cls(type_by_hint, keywords)


_rules_by_pack: dict[str, tuple[DomainPack, _DomainRules]] = {}


def _rules_of(domain: DomainPack) -> _DomainRules:
    """The domain's rules, kept per pack name for as long as the registry hands out the same pack."""
    cached = _rules_by_pack.get(domain.pack)
    if cached is not None and cached[0] is domain:
        return cached[1]
    rules = _DomainRules.of(domain)
    _rules_by_pack[domain.pack] = (domain, rules)
    return rules


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
        padded = f" {_lower_words(item.description)} "
        scores: dict[str, int] = {}
        for name, keywords in _rules_of(domain).keywords:
            hits = sum(1 for keyword in keywords if keyword in padded)
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
