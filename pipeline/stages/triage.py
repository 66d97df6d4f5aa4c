"""Triage: type, severity, confidence, rationale and the SLA deadline, through a triage backend."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from pipeline.events import EventEnvelope, EventType
from pipeline.packs import PackRegistry
from pipeline.settings import Settings
from pipeline.stages.base import BatchState, Emission, Stage, require_exception
from pipeline.stages.sla_monitor import imminent_at
from pipeline.triage import RulesBackend, TriageBackend, TriageDecision, TriageInput, assess_severity


class TriageStage(Stage):
    name = "triage"
    accepts = frozenset({EventType.EXCEPTION_NORMALIZED})
    exception_columns = ("created_at",)  # the event carries the rest
    def __init__(self, settings: Settings, packs: PackRegistry, backend: TriageBackend | None = None) -> None:
        super().__init__(settings, packs)
        self.backend = backend or RulesBackend()
        # The pack's rules answer at once, in process; a model may take a while, or answer remotely.
        self.slow_prepare = not isinstance(self.backend, RulesBackend)

    async def prepare(self, events: list[EventEnvelope], state: BatchState) -> None:
        # Classify the whole batch at once (outside the transaction for model backends: they are slow).
        inputs = [
            TriageInput(
                tenant=self.packs.view(event.tenant_id),
                exception_id=event.exception_id,
                type_hint=event.payload.get("type_hint"),
                description=event.payload.get("description", ""),
                attributes=event.payload.get("attributes", {}),
            )
            for event in events
        ]
        for event, decision in zip(events, await self._classify(inputs), strict=True):
            state.prepared[event.event_id] = decision

    async def _classify(self, inputs: list[TriageInput]) -> list[TriageDecision]:
        """A remote pool answers asynchronously; an in-process model runs in a thread so it does not
        stall the event loop."""
        classify_async = getattr(self.backend, "classify_async", None)
        if classify_async is not None:
            return await classify_async(inputs)
        if isinstance(self.backend, RulesBackend):
            return self.backend.classify(inputs)
        return await asyncio.to_thread(self.backend.classify, inputs)

    async def handle(self, event: EventEnvelope, state: BatchState) -> list[Emission]:
        row = require_exception(event, state)
        tenant = self.packs.view(event.tenant_id)
        decision: TriageDecision = state.prepared[event.event_id]
        attributes = event.payload.get("attributes", {})
        severity, rules = assess_severity(tenant, decision.exception_type, attributes, event.payload.get("description", ""))
        detected_at = row["created_at"] or state.now
        window = timedelta(minutes=tenant.sla_minutes(severity))
        deadline = detected_at + window
        rationale = decision.rationale + (f"; severity rules: {', '.join(rules)}" if rules else "")
        state.update_exception(
            (event.tenant_id, event.exception_id),
            status="triaged",
            exception_type=decision.exception_type,
            severity=severity.value,
            confidence=decision.confidence,
            rationale=rationale,
            triage_backend=decision.backend,
            triage_model=decision.model,
            sla_deadline=deadline,
            sla_next_check_at=imminent_at(deadline, window, self.settings.sla.imminent_fraction),
        )
        return [
            Emission(
                EventType.TRIAGE_COMPLETED,
                {
                    "exception_type": decision.exception_type,
                    "severity": severity.value,
                    "confidence": decision.confidence,
                    "rationale": rationale,
                    "backend": decision.backend,
                    "model": decision.model,
                    "sla_deadline": deadline.isoformat(),
                    "severity_rules": rules,
                },
            )
        ]
