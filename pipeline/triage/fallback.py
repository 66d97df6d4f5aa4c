"""The fallback chain: each backend answers what it can; what it cannot goes to the next one.

The last backend (rules) always answers. Every decision keeps the backend and model that actually
made it, so `exceptions.triage_backend` shows when the model was bypassed.
"""

from __future__ import annotations

import logging

from pipeline.errors import SentinaiError
from pipeline.triage.backend import TriageBackend, TriageDecision, TriageInput

log = logging.getLogger(__name__)


class FallbackBackend:
    name = "fallback"

    def __init__(self, backends: list[TriageBackend]) -> None:
        if not backends:
            raise ValueError("a fallback chain needs at least one backend")
        self.backends = backends

    def classify(self, batch: list[TriageInput]) -> list[TriageDecision]:
        decisions: list[TriageDecision | None] = [None] * len(batch)
        pending = list(range(len(batch)))
        for position, backend in enumerate(self.backends):
            last = position == len(self.backends) - 1
            items = [batch[i] for i in pending]
            answers = self._answers(backend, items, last=last)
            still_pending = []
            for index, answer in zip(pending, answers, strict=True):
                if answer is None:
                    still_pending.append(index)
                else:
                    decisions[index] = answer
            if still_pending and not last:
                log.info("triage: %d of %d item(s) fall back from %s to %s", len(still_pending), len(items),
                         backend.name, self.backends[position + 1].name)
            pending = still_pending
            if not pending:
                break
        return [decision for decision in decisions if decision is not None]

    @staticmethod
    def _answers(backend: TriageBackend, items: list[TriageInput], *, last: bool) -> list[TriageDecision | None]:
        partial = getattr(backend, "classify_partial", None)
        try:
            if partial is not None:
                return list(partial(items))
            return list(backend.classify(items))
        except (SentinaiError, OSError, RuntimeError, ValueError) as error:
            if last:
                raise
            log.info("triage backend %s failed for %d item(s): %s", backend.name, len(items), error)
            return [None] * len(items)
