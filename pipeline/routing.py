"""Which topic carries which event type, and which stage consumes which topic.

One input topic per stage (intake consumes `exceptions`). An event with no route is terminal: it is
kept in `event_log` only. Feedback learns tool outcomes from `tool_executions` when the playbook
ends rather than from every ToolExecutionCompleted, which saves one Kafka hop per tool call.
"""

from __future__ import annotations

from pipeline.events import EventType
from pipeline.settings import KafkaSettings

STAGE_INPUT_TOPICS: dict[str, str] = {
    "intake": "exceptions",
    "triage": "sentinai.triage",
    "policy": "sentinai.policy",
    "playbook": "sentinai.playbook",
    "tool": "sentinai.tool",
    "feedback": "sentinai.feedback",
}
SLA_EVENTS_TOPIC = "sentinai.sla-events"
DLQ_TOPIC = "sentinai.dlq"
BACKPRESSURE_TOPIC = "sentinai.backpressure"
# Created with the others and never read or written: nothing mentions it, so the broker never
# auto-creates it. Its absence means the broker lost its topics (the bundled broker restarted).
BROKER_EPOCH_TOPIC = "sentinai.broker-epoch"

EVENT_ROUTES: dict[EventType, tuple[str, ...]] = {
    EventType.EXCEPTION_INGESTED: ("intake",),
    EventType.EXCEPTION_NORMALIZED: ("triage",),
    EventType.TRIAGE_COMPLETED: ("policy",),
    EventType.POLICY_EVALUATION_COMPLETED: (),
    EventType.EXCEPTION_ESCALATED: ("feedback",),
    EventType.PLAYBOOK_MATCHED: ("playbook",),
    EventType.TOOL_EXECUTION_REQUESTED: ("tool",),
    EventType.TOOL_EXECUTION_COMPLETED: ("playbook",),
    EventType.APPROVAL_DECIDED: ("playbook",),
    EventType.PLAYBOOK_COMPLETED: ("feedback",),
    EventType.EXCEPTION_RESOLVED: (),
    EventType.FEEDBACK_CAPTURED: (),
    EventType.SLA_IMMINENT: (),
    EventType.SLA_EXPIRED: (),
    EventType.BACKPRESSURE_DETECTED: (),
}


def input_topic(kafka: KafkaSettings, stage: str) -> str:
    return kafka.topic(STAGE_INPUT_TOPICS[stage])


def topics_for(kafka: KafkaSettings, event_type: EventType) -> list[str]:
    """Kafka topics an event of this type is published to."""
    topics = [kafka.topic(STAGE_INPUT_TOPICS[stage]) for stage in EVENT_ROUTES[event_type]]
    if event_type in (EventType.SLA_IMMINENT, EventType.SLA_EXPIRED):
        topics.append(kafka.topic(SLA_EVENTS_TOPIC))
    if event_type is EventType.BACKPRESSURE_DETECTED:
        topics.append(kafka.topic(BACKPRESSURE_TOPIC))
    return topics


def all_topics(kafka: KafkaSettings) -> list[str]:
    """Every topic the platform creates at start-up."""
    names = [*STAGE_INPUT_TOPICS.values(), SLA_EVENTS_TOPIC, DLQ_TOPIC, BACKPRESSURE_TOPIC, BROKER_EPOCH_TOPIC]
    return [kafka.topic(name) for name in names]
