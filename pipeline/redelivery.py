"""Which copy of an event a stage processes, when Kafka redelivers it or the supervisor retries it.

A stage looks up every event of a batch in `event_processing_log` first (`Known`). An event never
seen is processed; a completed one is not, and its recorded outputs are re-published instead; a
retrying one is processed only from the record that carries the attempt the supervisor scheduled
(`RETRY_ATTEMPT_HEADER`), so each retry happens once (DESIGN.md §3).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.dead_letters import header_value
from pipeline.events import EventEnvelope
from pipeline.records import InboundRecord


@dataclass
class Known:
    """What `event_processing_log` holds about an event for this stage."""

    status: str
    retry_count: int
    output_event_ids: list[str]


RETRY_ATTEMPT_HEADER = "x-sentinai-retry-attempt"


def split_due(
    events: list[tuple[EventEnvelope, InboundRecord]], known: dict[str, Known]
) -> tuple[list[tuple[EventEnvelope, InboundRecord]], list[EventEnvelope]]:
    """The events to process now, and the completed ones whose recorded outputs are re-published."""
    fresh = [(event, record) for event, record in events if is_due(known.get(event.event_id), record)]
    replays = [event for event, _ in events if event.event_id in known and known[event.event_id].status == "completed"]
    return fresh, replays


def attempt_number(record: InboundRecord) -> int:
    """The retry attempt a record carries (-1: none, or unreadable)."""
    attempt = header_value(record, RETRY_ATTEMPT_HEADER)
    return int(attempt) if attempt is not None and attempt.isdigit() else -1


def is_due(known: Known | None, record: InboundRecord) -> bool:
    """Process an event never seen, or a retry when this record is the attempt the supervisor
    scheduled. Any other copy of a retrying event (a Kafka redelivery of the failed attempt, or a
    retry re-published twice) is stale: the retry happens once."""
    if known is None:
        return True
    if known.status != "retrying":
        return False
    attempt = header_value(record, RETRY_ATTEMPT_HEADER)
    return attempt is not None and attempt == str(known.retry_count)
