"""Triage: classify an exception's type, severity and confidence behind one backend interface."""

from pipeline.triage.backend import TriageBackend, TriageDecision, TriageInput
from pipeline.triage.rules import RulesBackend
from pipeline.triage.severity import assess_severity

__all__ = ["RulesBackend", "TriageBackend", "TriageDecision", "TriageInput", "assess_severity"]
