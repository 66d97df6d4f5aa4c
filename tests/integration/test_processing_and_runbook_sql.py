"""BatchProcessor against the real PostgreSQL (no Kafka, no Ray): exactly-once bookkeeping, and every
SQL query of the operations runbook, verbatim, answering what the runbook says it answers."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest

from pipeline.events import EventEnvelope, utc_now
from pipeline.ingest import ingestion_event
from pipeline.packs import load_packs
from pipeline.processing import BatchProcessor, ConcurrentProcessingError
from pipeline.records import InboundRecord
from pipeline.redelivery import RETRY_ATTEMPT_HEADER
from pipeline.routing import DLQ_TOPIC
from pipeline.settings import Settings
from pipeline.stages import BatchState, Emission, IntakeStage
from pipeline.storage import schema
from pipeline.storage.database import create_engine
from tests.integration.helpers import fetch

pytestmark = pytest.mark.integration

# Copied from the runbook (shared/seeds/000_2d279698ac2ceede.txt); identifiers as written there.
RUNBOOK_QUERIES = {
    "retrying": "SELECT * FROM event_processing_log \nWHERE status = 'retrying' \nORDER BY retry_count DESC;",
    "failed": "SELECT * FROM event_processing_log \nWHERE status = 'failed' \nORDER BY last_attempt_at DESC;",
    "dlq_recent": "SELECT * FROM dead_letter_queue \nORDER BY created_at DESC \nLIMIT 100;",
    "dlq_size": "SELECT COUNT(*) FROM dead_letter_queue;",
    "dlq_failures": """SELECT 
  event_id,
  event_type,
  tenant_id,
  exception_id,
  error_message,
  retry_count,
  created_at
FROM dead_letter_queue
ORDER BY created_at DESC
LIMIT 20;""",
    "dlq_by_error_type": """SELECT 
  error_type,
  COUNT(*) as count
FROM dead_letter_queue
GROUP BY error_type
ORDER BY count DESC;""",
    "dlq_by_tenant": """SELECT 
  tenant_id,
  COUNT(*) as count
FROM dead_letter_queue
GROUP BY tenant_id
ORDER BY count DESC;""",
    "event": "SELECT * FROM event_log WHERE event_id = 'EVT_123';",
    "exception": "SELECT * FROM exceptions WHERE exception_id = 'EXC_123';",
    "clear_tenant": "DELETE FROM dead_letter_queue WHERE tenant_id = 'TENANT_001';",
    "clear_all": "TRUNCATE TABLE dead_letter_queue;",
}


def _record(offset: int, value: bytes, key: bytes = b"k") -> InboundRecord:
    return InboundRecord(topic="exceptions", partition=0, offset=offset, key=key, value=value)


def _ingested(exception_ids: list[str]) -> tuple[list[EventEnvelope], list[InboundRecord]]:
    """An ExceptionIngested event of FIN_ACME per id, and their records at offsets 0, 1, ..."""
    packs = load_packs()
    events = [ingestion_event("FIN_ACME", {"exception_id": exception_id, "description": "settlement failed"},
                              packs=packs, now=utc_now(), source="test") for exception_id in exception_ids]
    return events, [_record(offset, event.to_bytes()) for offset, event in enumerate(events)]


async def _process(settings: Settings, records: list[InboundRecord], stage: type[IntakeStage] = IntakeStage):  # type: ignore[no-untyped-def]
    assert settings.database.url is not None
    engine = create_engine(settings.database.url.get_secret_value(), settings.database)
    packs = load_packs()
    try:
        return await BatchProcessor(stage(settings, packs), engine, settings, packs).process(records)
    finally:
        await engine.dispose()


def test_a_redelivered_batch_has_no_second_effect_and_republishes_the_same_outputs(settings: Settings) -> None:
    _, records = _ingested([f"EXC_{i}" for i in range(5)])
    first = asyncio.run(_process(settings, records))
    again = asyncio.run(_process(settings, records))

    assert first.count("completed") == 5 and again.count("duplicate") == 5
    # The same events (ids, payloads, timestamps) come out again; JSONB may reorder keys in the bytes.
    assert [json.loads(out.value) for out in again.outputs] == [json.loads(out.value) for out in first.outputs]
    assert fetch(settings, "SELECT count(*) AS n FROM exceptions")[0]["n"] == 5
    assert fetch(settings, "SELECT count(*) AS n FROM event_processing_log")[0]["n"] == 5
    counted = fetch(settings, "SELECT sum(value) AS n FROM metric_counters WHERE name = 'events_processed_total' "
                              "AND status = 'completed'")[0]["n"]
    assert counted == 5


def test_a_due_retry_in_one_batch_with_a_redelivery_of_its_failed_original_runs(settings: Settings) -> None:
    """A consumer that died before committing re-reads the failed original; the supervisor's
    re-published attempt can land in the same batch. The attempt must run, once."""
    packs = load_packs()
    event = ingestion_event("FIN_ACME", {"exception_id": "EXC_RETRY", "description": "settlement failed"}, packs=packs,
                            now=utc_now(), source="test")
    fetch(settings, f"""INSERT INTO event_processing_log (event_id, worker_type, event_type, tenant_id, exception_id, status,
                        retry_count, error_type, next_retry_at, last_attempt_at)
                        VALUES ('{event.event_id}', 'intake', 'ExceptionIngested', 'FIN_ACME', 'EXC_RETRY', 'retrying', 1,
                        'database_unavailable', now(), now()) RETURNING id""")
    original = _record(7, event.to_bytes())
    attempt = InboundRecord(topic="exceptions", partition=0, offset=9, key=b"k", value=event.to_bytes(),
                            headers=((RETRY_ATTEMPT_HEADER, b"1"),))
    result = asyncio.run(_process(settings, [original, attempt]))

    assert result.count("completed") == 1
    rows = fetch(settings, f"SELECT status, retry_count, \"offset\" FROM event_processing_log WHERE event_id = '{event.event_id}'")
    assert [(row["status"], row["retry_count"], row["offset"]) for row in rows] == [("completed", 1, 9)]
    assert fetch(settings, "SELECT status FROM exceptions WHERE exception_id = 'EXC_RETRY'")[0]["status"] == "open"


def test_a_batch_whose_events_another_worker_recorded_first_writes_nothing(settings: Settings) -> None:
    """Two workers with the same records (a rebalance): the second looked for recorded events before
    the first wrote them. Its write statement claims fewer events than it holds, so it must leave
    nothing at all, not even for the event nobody had recorded, and ask for the batch to be re-run."""
    packs = load_packs()
    events, records = _ingested([f"EXC_RACE_{i}" for i in range(4)])
    asyncio.run(_process(settings, records[:3]))
    # A later stage moved the exceptions on; re-applying intake's upsert would move them back.
    fetch(settings, "UPDATE exceptions SET status = 'triaged' WHERE exception_id LIKE 'EXC_RACE_%'")
    before = {table: fetch(settings, f"SELECT count(*) AS n FROM {table}")[0]["n"]
              for table in ("event_log", "event_processing_log", "metric_counters")}

    async def late_worker() -> None:
        assert settings.database.url is not None
        engine = create_engine(settings.database.url.get_secret_value(), settings.database)
        try:
            processor = BatchProcessor(IntakeStage(settings, packs), engine, settings, packs)

            async def looked_before_the_first_worker_wrote(connection, event_ids):  # type: ignore[no-untyped-def]
                return {}

            processor._load_known = looked_before_the_first_worker_wrote  # type: ignore[method-assign]
            await processor.process(records)
        finally:
            await engine.dispose()

    with pytest.raises(ConcurrentProcessingError) as raised:
        asyncio.run(late_worker())

    assert raised.value.retryable
    statuses = fetch(settings, "SELECT exception_id, status FROM exceptions WHERE exception_id LIKE 'EXC_RACE_%' ORDER BY 1")
    assert [(row["exception_id"], row["status"]) for row in statuses] == [(f"EXC_RACE_{i}", "triaged") for i in range(3)]
    after = {table: fetch(settings, f"SELECT count(*) AS n FROM {table}")[0]["n"]
             for table in ("event_log", "event_processing_log", "metric_counters")}
    assert after == before
    assert fetch(settings, f"SELECT count(*) AS n FROM event_log WHERE event_id = '{events[3].event_id}'")[0]["n"] == 0

    # Re-run as the consumer would: the recorded events are duplicates, the new one completes.
    rerun = asyncio.run(_process(settings, records))
    assert rerun.count("duplicate") == 3 and rerun.count("completed") == 1
    assert fetch(settings, "SELECT count(*) AS n FROM exceptions WHERE exception_id LIKE 'EXC_RACE_%'")[0]["n"] == 4


class _IntakeWithABrokenRow(IntakeStage):
    """Queues a row PostgreSQL refuses (NOT NULL) for EXC_BAD: the batch's one statement fails as a whole."""

    async def handle(self, event: EventEnvelope, state: BatchState) -> list[Emission]:
        emissions = await super().handle(event, state)
        if event.exception_id == "EXC_BAD":
            state.insert(schema.tool_executions, {
                "execution_id": event.event_id, "tenant_id": event.tenant_id, "exception_id": event.exception_id,
                "playbook_id": "p", "step_index": 0, "tool_name": "t", "tool_kind": None, "input": {},
                "outcome": "succeeded", "duration_ms": 0.0,
            })
        return emissions


def test_a_batch_that_fails_as_a_whole_is_split_and_only_the_culprit_is_dead_lettered(settings: Settings) -> None:
    _, records = _ingested(["EXC_OK_1", "EXC_BAD", "EXC_OK_2"])
    result = asyncio.run(_process(settings, records, _IntakeWithABrokenRow))

    assert result.count("completed") == 2 and result.count("dead_lettered") == 1
    assert [out.topic for out in result.outputs].count(settings.kafka.topic(DLQ_TOPIC)) == 1
    dead = fetch(settings, "SELECT exception_id, error_type FROM dead_letter_queue")
    assert [(row["exception_id"], row["error_type"]) for row in dead] == [("EXC_BAD", "database_error")]
    logged = fetch(settings, "SELECT exception_id, status FROM event_processing_log ORDER BY exception_id")
    assert [(row["exception_id"], row["status"]) for row in logged] == [
        ("EXC_BAD", "failed"), ("EXC_OK_1", "completed"), ("EXC_OK_2", "completed")]
    kept = fetch(settings, "SELECT exception_id FROM exceptions ORDER BY exception_id")
    assert [row["exception_id"] for row in kept] == ["EXC_OK_1", "EXC_OK_2"]
    assert fetch(settings, "SELECT count(*) AS n FROM tool_executions")[0]["n"] == 0


class _SlowIntake(IntakeStage):
    async def handle(self, event: EventEnvelope, state: BatchState) -> list[Emission]:
        await asyncio.sleep(0.2)
        return await super().handle(event, state)


def test_processing_latency_runs_to_the_end_of_the_batchs_processing(settings: Settings) -> None:
    # processing_latency_seconds is "event processing duration": the stage's own work counts, not
    # only the wait before the batch began (three events at 0.2 s each).
    _, records = _ingested(["EXC_SLOW_1", "EXC_SLOW_2", "EXC_SLOW_3"])
    result = asyncio.run(_process(settings, records, _SlowIntake))

    latencies = [stat.latency_s for stat in result.stats if stat.status == "completed"]
    assert len(latencies) == 3 and all(latency is not None and latency >= 0.6 for latency in latencies), latencies
    recorded = fetch(settings, "SELECT sum(sum_seconds) AS total FROM latency_histogram WHERE worker_type = 'intake'")
    assert recorded[0]["total"] >= 1.8


def test_runbook_queries_run_verbatim_and_answer_what_it_says(settings: Settings, tmp_path: Path) -> None:
    runbook = Path(__file__).resolve().parents[3] / "shared" / "seeds" / "000_2d279698ac2ceede.txt"
    if runbook.exists():  # the copy in this repository must stay the runbook's own text
        text = runbook.read_text()
        for name, query in RUNBOOK_QUERIES.items():
            assert query in text, f"runbook query {name} changed upstream"

    packs = load_packs()
    good = ingestion_event("FIN_ACME", {"exception_id": "EXC_123", "description": "x"}, packs=packs, now=utc_now(),
                           source="test").model_copy(update={"event_id": "EVT_123"})
    unknown = good.model_copy(update={"event_id": "EVT_BAD", "tenant_id": "TENANT_001", "exception_id": "EXC_9"})
    result = asyncio.run(_process(settings, [_record(0, good.to_bytes()), _record(1, unknown.to_bytes()),
                                              _record(2, b"\x00 not json")]))
    assert result.count("completed") == 1 and result.count("dead_lettered") == 2
    # A retry in flight, as the supervisor would see it.
    fetch(settings, """INSERT INTO event_processing_log (event_id, worker_type, event_type, tenant_id, exception_id,
                       status, retry_count, error_type, error_message, next_retry_at)
                       VALUES ('EVT_R', 'tool', 'ToolExecutionRequested', 'FIN_ACME', 'EXC_123', 'retrying', 2,
                               'tool_unavailable', 'HTTP 503', $1)""", utc_now() + timedelta(seconds=4))

    answers = {name: fetch(settings, query) for name, query in RUNBOOK_QUERIES.items() if not name.startswith("clear")}
    assert [(r["event_id"], r["retry_count"], r["next_retry_at"] is not None) for r in answers["retrying"]] == [("EVT_R", 2, True)]
    assert {r["event_id"] for r in answers["failed"]} == {"EVT_BAD", answers["dlq_recent"][-1]["event_id"]}
    assert answers["dlq_size"][0]["count"] == 2 and len(answers["dlq_recent"]) == 2
    assert {(r["event_id"], r["tenant_id"]) for r in answers["dlq_failures"]} >= {("EVT_BAD", "TENANT_001")}
    assert {r["error_type"]: r["count"] for r in answers["dlq_by_error_type"]} == {"unknown_tenant": 1, "validation_error": 1}
    assert {r["tenant_id"]: r["count"] for r in answers["dlq_by_tenant"]} == {"TENANT_001": 1, None: 1}
    assert [r["event_type"] for r in answers["event"]] == ["ExceptionIngested"]
    assert [(r["tenant_id"], r["status"]) for r in answers["exception"]] == [("FIN_ACME", "open")]

    fetch(settings, RUNBOOK_QUERIES["clear_tenant"])
    assert [dict(r) for r in fetch(settings, "SELECT tenant_id FROM dead_letter_queue")] == [{"tenant_id": None}]
    fetch(settings, RUNBOOK_QUERIES["clear_all"])
    assert fetch(settings, "SELECT count(*) AS n FROM dead_letter_queue")[0]["n"] == 0
