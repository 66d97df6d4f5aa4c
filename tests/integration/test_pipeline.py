"""The whole pipeline on the real broker, PostgreSQL and a local Ray: 1,000 exceptions of three
tenants reach their final state with the pack's severities and playbooks, and SIGKILLed actors lose
nothing and duplicate nothing."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest
import ray

from pipeline.settings import Settings
from tests.integration.helpers import (
    ENDED_STATUSES,
    demo_events,
    expected_outcome,
    fetch,
    load_packs_for,
    publish_events,
    running_platform,
    wait_for_final,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_session")]


def test_a_thousand_exceptions_reach_their_final_state(settings: Settings) -> None:
    packs = load_packs_for(settings)
    events = demo_events(packs, count=1000, seed=20261129)
    expected = {(e.tenant_id, e.exception_id): expected_outcome(packs, e) for e in events}
    assert {tenant for tenant, _ in expected} == {"FIN_ACME", "FIN_GLOBEX", "HC_MERIDIAN"}

    with running_platform(settings):
        publish_events(settings, events)
        counts = wait_for_final(settings, expected=1000, timeout_s=240)

    rows = fetch(settings, "SELECT tenant_id, exception_id, status, exception_type, severity, playbook_id FROM exceptions")
    assert len(rows) == 1000
    mismatches = []
    for row in rows:
        want = expected[(row["tenant_id"], row["exception_id"])]
        got = (row["exception_type"], row["severity"], row["playbook_id"])
        if got != (want.exception_type, want.severity, want.playbook_id):
            mismatches.append((row["exception_id"], got, want))
        if want.escalated:
            assert row["status"] == "escalated", row
        elif want.waits_for_approval:
            assert row["status"] == "awaiting_approval", row
        else:
            # Auto-handled: resolved, or escalated because a tool reported a business failure.
            assert row["status"] in ("resolved", "pending_external", "escalated"), row
    assert mismatches == []
    # The demo traffic exercises every outcome.
    assert counts.get("resolved", 0) > 0 and counts.get("awaiting_approval", 0) > 0 and counts.get("escalated", 0) > 0
    assert fetch(settings, "SELECT count(*) AS n FROM dead_letter_queue")[0]["n"] == 0
    severities = Counter(row["severity"] for row in rows)
    assert set(severities) >= {"LOW", "MEDIUM", "HIGH", "CRITICAL"}, severities
    _assert_effects_exactly_once(settings, 1000)


def test_sigkilled_consumer_and_stage_actors_lose_and_duplicate_nothing(settings: Settings) -> None:
    packs = load_packs_for(settings)
    events = demo_events(packs, count=600, seed=7)

    with running_platform(settings) as deployment:
        publish_events(settings, events[:300])
        _wait_until_processed(settings, "triage", at_least=50)
        consumer = deployment.consumer("triage")
        pool = deployment.pool("playbook")
        killed = {ray.get(consumer.ping.remote()), ray.get(pool.ping.remote())}
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        publish_events(settings, events[300:])
        wait_for_final(settings, expected=600, timeout_s=240)
        # Ray restarted both actors: they answer from new processes.
        assert ray.get(consumer.ping.remote(), timeout=60) not in killed
        assert ray.get(pool.ping.remote(), timeout=60) not in killed

    assert fetch(settings, "SELECT count(*) AS n FROM exceptions")[0]["n"] == 600
    assert fetch(settings, "SELECT count(*) AS n FROM dead_letter_queue")[0]["n"] == 0
    _assert_effects_exactly_once(settings, 600)


def _wait_until_processed(settings: Settings, stage: str, at_least: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = fetch(settings, "SELECT count(*) AS n FROM event_processing_log WHERE worker_type = $1", stage)[0]["n"]
        if done >= at_least:
            return
        time.sleep(0.2)
    raise AssertionError(f"{stage} processed fewer than {at_least} events in {timeout_s}s")


def _assert_effects_exactly_once(settings: Settings, exceptions: int) -> None:
    """Every effect once: one event of each kind per exception, one tool execution per step, one
    feedback row per ended exception, one processing record per (event, stage)."""
    per_exception = fetch(
        settings,
        """SELECT event_type, count(*) AS n, count(DISTINCT (tenant_id, exception_id)) AS distinct_exceptions
           FROM event_log GROUP BY event_type""",
    )
    for row in per_exception:
        if row["event_type"] in ("ToolExecutionRequested", "ToolExecutionCompleted"):
            continue  # a playbook may call several tools; checked per step below
        assert row["n"] == row["distinct_exceptions"], dict(row)
    by_type = {row["event_type"]: row["n"] for row in per_exception}
    assert by_type["ExceptionIngested"] == exceptions
    assert by_type["ExceptionNormalized"] == exceptions
    assert by_type["TriageCompleted"] == exceptions
    duplicate_tools = fetch(
        settings,
        """SELECT tenant_id, exception_id, step_index, count(*) FROM tool_executions
           GROUP BY tenant_id, exception_id, step_index HAVING count(*) > 1""",
    )
    assert duplicate_tools == []
    assert by_type.get("ToolExecutionRequested", 0) == fetch(settings, "SELECT count(*) AS n FROM tool_executions")[0]["n"]
    duplicate_processing = fetch(
        settings, "SELECT event_id, worker_type FROM event_processing_log GROUP BY 1, 2 HAVING count(*) > 1"
    )
    assert duplicate_processing == []
    # The Prometheus counters agree exactly with the processing records, kills and retries included.
    counted = {row["worker_type"]: row["n"] for row in fetch(
        settings,
        """SELECT worker_type, sum(value) AS n FROM metric_counters
           WHERE name = 'events_processed_total' AND status = 'completed' GROUP BY 1""")}
    recorded = {row["worker_type"]: row["n"] for row in fetch(
        settings, "SELECT worker_type, count(*) AS n FROM event_processing_log WHERE status = 'completed' GROUP BY 1")}
    assert counted == recorded and counted["intake"] == exceptions
    ended = fetch(settings, "SELECT count(*) AS n FROM exceptions WHERE status = ANY($1)", list(ENDED_STATUSES))[0]["n"]
    assert fetch(settings, "SELECT count(*) AS n FROM feedback")[0]["n"] == ended
