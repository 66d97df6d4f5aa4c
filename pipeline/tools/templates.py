"""Fill `{attributes.trade_id}`-style templates in playbook step inputs from an exception's context.

The context is a dict such as `{"exception_id", "tenant_id", "severity", "exception_type",
"source_system", "attributes": {...}}`. A string that is exactly one template keeps the value's type
(`"{attributes.amount}"` gives the number 1250000.0, not a string), so tool inputs still validate
against their JSON schemas. Braces around anything that is not a dotted name (`{}`, `{"a": 1}`) are
left alone.
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.errors import ToolInputError

_TEMPLATE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\}")


def render_template(value: Any, context: dict[str, Any]) -> Any:
    """`value` with every template replaced, recursing into dicts and lists.

    Raises ToolInputError naming the dotted key when a template refers to something the context
    lacks (or walks into a value that is not a dict).
    """
    if isinstance(value, dict):
        return {key: render_template(item, context) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [render_template(item, context) for item in value]
    if not isinstance(value, str) or "{" not in value:
        return value
    whole = _TEMPLATE.fullmatch(value)
    if whole:
        return lookup(whole.group(1), context)
    return _TEMPLATE.sub(lambda match: str(lookup(match.group(1), context)), value)


def lookup(path: str, context: dict[str, Any]) -> Any:
    """The value at dotted `path` in `context`. Raises ToolInputError naming the missing key."""
    current: Any = context
    for depth, key in enumerate(path.split(".")):
        if not isinstance(current, dict) or key not in current:
            walked = ".".join(path.split(".")[: depth + 1])
            raise ToolInputError(f"template {{{path}}}: no value for {walked!r}")
        current = current[key]
    return current
