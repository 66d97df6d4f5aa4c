"""pipeline.routing: which topic carries which event type, and which stage reads which topic."""

from __future__ import annotations

import pytest

from pipeline.events import EventType
from pipeline.routing import EVENT_ROUTES, STAGE_INPUT_TOPICS, all_topics, input_topic, topics_for
from pipeline.settings import STAGE_NAMES, KafkaSettings
from pipeline.stages import STAGE_CLASSES

PREFIXED = KafkaSettings(topic_prefix="t1.")


def test_every_event_type_has_a_route() -> None:
    assert set(EVENT_ROUTES) == set(EventType)


def test_every_stage_has_an_input_topic() -> None:
    assert tuple(STAGE_INPUT_TOPICS) == STAGE_NAMES
    assert len(set(STAGE_INPUT_TOPICS.values())) == len(STAGE_NAMES)


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_a_stage_is_routed_exactly_the_events_it_accepts(stage: str) -> None:
    routed = {event_type for event_type, stages in EVENT_ROUTES.items() if stage in stages}
    assert routed == set(STAGE_CLASSES[stage].accepts)


def test_intake_reads_the_prefixed_exceptions_topic() -> None:
    assert input_topic(PREFIXED, "intake") == "t1.exceptions"
    assert input_topic(KafkaSettings(), "intake") == "exceptions"
    assert topics_for(PREFIXED, EventType.EXCEPTION_INGESTED) == ["t1.exceptions"]


@pytest.mark.parametrize(
    ("event_type", "topics"),
    [
        (EventType.EXCEPTION_NORMALIZED, ["t1.sentinai.triage"]),
        (EventType.TRIAGE_COMPLETED, ["t1.sentinai.policy"]),
        (EventType.PLAYBOOK_MATCHED, ["t1.sentinai.playbook"]),
        (EventType.TOOL_EXECUTION_REQUESTED, ["t1.sentinai.tool"]),
        (EventType.TOOL_EXECUTION_COMPLETED, ["t1.sentinai.playbook"]),
        (EventType.APPROVAL_DECIDED, ["t1.sentinai.playbook"]),
        (EventType.EXCEPTION_ESCALATED, ["t1.sentinai.feedback"]),
        (EventType.PLAYBOOK_COMPLETED, ["t1.sentinai.feedback"]),
        (EventType.SLA_IMMINENT, ["t1.sentinai.sla-events"]),
        (EventType.SLA_EXPIRED, ["t1.sentinai.sla-events"]),
        (EventType.BACKPRESSURE_DETECTED, ["t1.sentinai.backpressure"]),
        (EventType.POLICY_EVALUATION_COMPLETED, []),
        (EventType.EXCEPTION_RESOLVED, []),
        (EventType.FEEDBACK_CAPTURED, []),
    ],
)
def test_topics_for_with_a_prefix(event_type: EventType, topics: list[str]) -> None:
    assert topics_for(PREFIXED, event_type) == topics


def test_all_topics_are_prefixed_and_distinct() -> None:
    topics = all_topics(PREFIXED)
    assert len(topics) == len(set(topics)) == 10
    assert all(topic.startswith("t1.") for topic in topics)
    assert {"t1.exceptions", "t1.sentinai.dlq", "t1.sentinai.sla-events", "t1.sentinai.backpressure"} <= set(
        topics
    )
    every_routed = {topic for event_type in EventType for topic in topics_for(PREFIXED, event_type)}
    assert every_routed <= set(topics)
