"""Actor names: what the Ray dashboard shows, so an operator can tell stage and index at a glance."""

from __future__ import annotations

SUPERVISOR_NAME = "sentinai:supervisor"
SLA_MONITOR_NAME = "sentinai:sla_monitor"


def pool_actor_name(stage: str, index: int) -> str:
    return f"sentinai:{stage}:pool:{index}"


def consumer_actor_name(stage: str, index: int) -> str:
    return f"sentinai:{stage}:consumer:{index}"
