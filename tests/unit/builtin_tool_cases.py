"""What the built-in tool tests share: a fixed `now` (a Wednesday) and a runner that checks the
output is JSON as it is."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pipeline.tools import BUILTIN_TOOLS, ToolContext

NOW = datetime(2025, 6, 4, 14, 0, tzinfo=UTC)  # a Wednesday
CTX = ToolContext(tenant_id="FIN_ACME", exception_id="EXC-1", execution_id="exec-0001", now=NOW)


def run(tool: str, data: dict, ctx: ToolContext = CTX) -> dict:
    result = BUILTIN_TOOLS[tool](data, ctx)
    assert json.loads(json.dumps(result)) == result  # JSON-serialisable as it is
    return result

