"""Evaluate a pack `Condition` against a normalised exception."""

from __future__ import annotations

from typing import Any

from pipeline.packs.models import Condition


def attribute(attributes: dict[str, Any], dotted: str) -> Any:
    """`a.b.c` lookup; None when any part is missing."""
    value: Any = attributes
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def as_number(value: Any) -> float | None:
    """Numbers, and strings like "1,250,000.50"; None for anything else (a rule then does not match)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.replace(",", "").strip())
        except ValueError:
            return None
    return None


def matches(condition: Condition, exception_type: str, attributes: dict[str, Any], description: str) -> bool:
    if condition.exception_types and exception_type not in condition.exception_types:
        return False
    if condition.text_contains:
        text = description.lower()
        if not any(fragment.lower() in text for fragment in condition.text_contains):
            return False
    if condition.field is None:
        return True
    value = attribute(attributes, condition.field)
    if condition.gte is not None or condition.lte is not None:
        number = as_number(value)
        if number is None:
            return False
        if condition.gte is not None and number < condition.gte:
            return False
        if condition.lte is not None and number > condition.lte:
            return False
    if condition.equals is not None and value != condition.equals:
        return False
    if condition.one_of and str(value) not in condition.one_of:
        return False
    return True
