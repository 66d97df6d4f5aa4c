"""Failure handling against the real broker, PostgreSQL and Ray: retries with backoff, the DLQ and
replay, bad input, and SIGKILLed supervisor / consumer / stage actors while retries are pending."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest
import ray
from aiokafka import AIOKafkaProducer

from pipeline.dlq import DeadLetterQueue, DlqFilter
from pipeline.events import EventEnvelope, utc_now
from pipeline.ingest import ingestion_event
from pipeline.settings import RetryPolicySettings, RetrySettings, Settings
from pipeline.storage.database import create_engine
from tests.integration.faults import ToolServerBehaviour, remote_check, tool_server, write_fault_packs
from tests.integration.helpers import (
    fetch,
    load_packs_for,
    publish_events,
    running_platform,
    wait_for_final,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_session")]


def _fault_settings(settings: Settings, tmp_path: Path, port: int, *, max_retries: int, base_delay_s: float) -> Settings:
    packs = write_fault_packs(tmp_path / "packs", port)
    policy = RetryPolicySettings(max_retries=max_retries, base_delay_s=base_delay_s, jitter_fraction=0.0)
    return settings.model_copy(update={"pack_dir": packs, "retry": RetrySettings(default=policy, poll_interval_s=0.2)})


def _remote_events(settings: Settings, count: int) -> list[EventEnvelope]:
    packs = load_packs_for(settings)
    return [ingestion_event("FAULT_TENANT", remote_check(i), packs=packs, now=utc_now(), source="test") for i in range(count)]


def _tool_processing(settings: Settings) -> list[dict[str, object]]:
    rows = fetch(settings, "SELECT event_id, status, retry_count, error_type FROM event_processing_log WHERE worker_type = 'tool'")
    return [dict(row) for row in rows]


def test_transient_failures_are_retried_with_backoff_then_complete(settings: Settings, tmp_path: Path) -> None:
    behaviour = ToolServerBehaviour(fail_first=2)
    with tool_server(behaviour) as port:
        settings = _fault_settings(settings, tmp_path, port, max_retries=4, base_delay_s=0.5)
        with running_platform(settings):
            publish_events(settings, _remote_events(settings, 5))
            counts = wait_for_final(settings, expected=5, timeout_s=90)

    assert counts == {"resolved": 5}
    rows = _tool_processing(settings)
    assert [(row["status"], row["retry_count"]) for row in rows] == [("completed", 2)] * 5
    for calls in behaviour.calls.values():
        assert len(calls) == 3  # the first attempt and exactly two retries
        first_gap, second_gap = calls[1] - calls[0], calls[2] - calls[1]
        # 0.5 s then 1 s of backoff, plus polling and a batch round trip (generous on a loaded 2-core box).
        assert 0.45 <= first_gap <= 6.0, calls
        assert 0.95 <= second_gap <= 6.5, calls
    assert fetch(settings, "SELECT count(*) AS n FROM dead_letter_queue")[0]["n"] == 0


def test_permanent_failure_is_dead_lettered_then_replayed_once_fixed(settings: Settings, tmp_path: Path) -> None:
    behaviour = ToolServerBehaviour(always_fail=True)
    with tool_server(behaviour) as port:
        settings = _fault_settings(settings, tmp_path, port, max_retries=2, base_delay_s=0.2)
        with running_platform(settings):
            publish_events(settings, _remote_events(settings, 3))
            wait_until(lambda: fetch(settings, "SELECT count(*) AS n FROM dead_letter_queue")[0]["n"] == 3, 60)

            entries = fetch(settings, "SELECT tenant_id, worker_type, error_type, retry_count FROM dead_letter_queue")
            assert {tuple(row) for row in entries} == {("FAULT_TENANT", "tool", "tool_unavailable", 2)}
            assert all(len(calls) == 3 for calls in behaviour.calls.values())  # 1 attempt + 2 retries
            failed = fetch(settings, "SELECT count(*) AS n FROM event_processing_log WHERE status = 'failed'")[0]["n"]
            assert failed == 3

            behaviour.always_fail = False  # the remote system is fixed
            replayed = asyncio.run(_replay(settings, DlqFilter(tenant_id="FAULT_TENANT")))
            assert replayed == 3
            counts = wait_for_final(settings, expected=3, timeout_s=60)
            assert counts == {"resolved": 3}
            assert asyncio.run(_replay(settings, DlqFilter(tenant_id="FAULT_TENANT"))) == 0  # nothing left to replay

    assert fetch(settings, "SELECT count(*) AS n FROM dead_letter_queue")[0]["n"] == 0
    audit = fetch(settings, "SELECT replayed_by, published_at FROM dlq_replays")
    assert len(audit) == 3 and all(row["replayed_by"] == "test" and row["published_at"] for row in audit)


def test_bad_input_is_dead_lettered_with_its_reason_and_good_input_flows(settings: Settings, tmp_path: Path) -> None:
    with tool_server(ToolServerBehaviour()) as port:
        settings = _fault_settings(settings, tmp_path, port, max_retries=1, base_delay_s=0.2)
        settings = settings.model_copy(update={"max_event_bytes": 4096})
        good = _remote_events(settings, 20)
        bad_tool_input = ingestion_event(
            "FAULT_TENANT", remote_check(999, amount="not-a-number"), packs=load_packs_for(settings), now=utc_now(), source="test"
        )
        template = json.loads(good[0].to_bytes())
        bad_records = {
            "undecodable": b"\xff\xfe\x00garbage",
            "not_an_event": b"[1, 2, 3]",
            "no_tenant": json.dumps({**template, "event_id": "no-tenant", "tenant_id": ""}).encode(),
            "unknown_tenant": json.dumps({**template, "event_id": "unknown-tenant", "tenant_id": "NOBODY"}).encode(),
            "suspended": json.dumps({**template, "event_id": "suspended", "tenant_id": "SUSPENDED_TENANT"}).encode(),
            "version": json.dumps({**template, "event_id": "future", "version": 9}).encode(),
            "too_large": json.dumps({**template, "event_id": "large", "payload": {"description": "x" * 10_000}}).encode(),
        }
        with running_platform(settings):
            asyncio.run(_produce_raw(settings, [good[i].to_bytes() for i in range(10)] + list(bad_records.values())
                                     + [bad_tool_input.to_bytes()] + [good[i].to_bytes() for i in range(10, 20)]))
            wait_for_final(settings, expected=20, timeout_s=90)
            wait_until(lambda: fetch(settings, "SELECT count(*) AS n FROM dead_letter_queue")[0]["n"] == 8, 30)

    counts = {row["status"]: row["n"] for row in fetch(settings, "SELECT status, count(*) AS n FROM exceptions GROUP BY 1")}
    # The exception whose tool input is bad waits, in progress, for a fix and a replay.
    assert counts == {"resolved": 20, "in_progress": 1}
    errors = {row["event_id"]: (row["worker_type"], row["error_type"]) for row in
              fetch(settings, "SELECT event_id, worker_type, error_type FROM dead_letter_queue")}
    by_id = {key: value for key, value in errors.items() if not key.startswith("raw-")}
    assert by_id == {
        "no-tenant": ("intake", "missing_identifier"),
        "unknown-tenant": ("intake", "unknown_tenant"),
        "suspended": ("intake", "tenant_suspended"),
        "future": ("intake", "unsupported_version"),
        "large": ("intake", "payload_too_large"),
        **{eid: ("tool", "tool_input_invalid") for eid in by_id if by_id[eid][0] == "tool"},
    }
    assert sorted(v for k, v in errors.items() if k.startswith("raw-")) == [("intake", "validation_error")] * 2
    assert [v for v in by_id.values() if v[0] == "tool"] == [("tool", "tool_input_invalid")]
    # The original bytes are kept for inspection and replay.
    kept = fetch(settings, "SELECT original_value FROM dead_letter_queue WHERE event_id LIKE 'raw-%' ORDER BY original_offset")
    assert {bytes(row["original_value"]) for row in kept} == {bad_records["undecodable"], bad_records["not_an_event"]}


def test_pending_retries_survive_sigkill_of_supervisor_consumer_and_stage_actor(settings: Settings, tmp_path: Path) -> None:
    behaviour = ToolServerBehaviour(fail_first=2)
    with tool_server(behaviour) as port:
        settings = _fault_settings(settings, tmp_path, port, max_retries=4, base_delay_s=2.0)
        events = _remote_events(settings, 20)
        with running_platform(settings) as deployment:
            # 1. The supervisor dies while retries are pending: it comes back and runs them on time.
            publish_events(settings, events[:10])
            wait_until(lambda: _count_tool(settings, "retrying") == 10, 60)
            supervisor_pid = ray.get(deployment.supervisor.ping.remote())
            os.kill(supervisor_pid, signal.SIGKILL)
            wait_until(lambda: _pid_of(deployment.supervisor) not in (None, supervisor_pid), 60)
            back_at = time.time()
            wait_until(lambda: _count_tool(settings, "completed") == 10, 60)
            supervised = {key: list(calls) for key, calls in behaviour.calls.items()}

            # 2. The tool stage's consumer and pool actor die while retries are pending.
            publish_events(settings, events[10:])
            wait_until(lambda: _count_tool(settings, "retrying") == 10, 60)
            pids = {ray.get(deployment.consumer("tool").ping.remote()),
                    ray.get(deployment.pool("tool").ping.remote())}
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            counts = wait_for_final(settings, expected=20, timeout_s=120)

    assert counts == {"resolved": 20}
    rows = _tool_processing(settings)
    assert len(rows) == 20 and all(row["status"] == "completed" and row["retry_count"] == 2 for row in rows)
    # Each retry happened once: three calls per execution, no more.
    assert sorted(len(calls) for calls in behaviour.calls.values()) == [3] * 20
    # Each retry ran within a few seconds of its due time (2 s, then 4 s of backoff), or of the
    # supervisor's return for a retry that fell due while it was down: nothing waited for a re-dispatch.
    for calls in supervised.values():
        assert calls[1] <= max(calls[0] + 2.0, back_at) + 3.0, (calls, back_at)
        assert calls[2] <= max(calls[1] + 4.0, back_at) + 3.0, (calls, back_at)
    assert fetch(settings, "SELECT count(*) AS n FROM tool_executions")[0]["n"] == 20
    assert fetch(settings, "SELECT count(*) AS n FROM dead_letter_queue")[0]["n"] == 0


def _count_tool(settings: Settings, status: str) -> int:
    return sum(1 for row in _tool_processing(settings) if row["status"] == status)


def _pid_of(actor: object) -> int | None:
    try:
        return ray.get(actor.ping.remote(), timeout=2)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - restarting
        return None


async def _replay(settings: Settings, dlq_filter: DlqFilter) -> int:
    assert settings.database.url is not None
    engine = create_engine(settings.database.url.get_secret_value(), settings.database)
    try:
        dlq = DeadLetterQueue(engine, settings.kafka)
        replays = await dlq.replay(replayed_by="test", now=utc_now(), dlq_filter=dlq_filter)
        await _produce_raw(settings, [r.record for r in replays])
        await dlq.mark_published([r.replay_id for r in replays], utc_now())
        return len(replays)
    finally:
        await engine.dispose()


async def _produce_raw(settings: Settings, values: list) -> None:  # type: ignore[type-arg]
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    await producer.start()
    try:
        for value in values:
            if isinstance(value, bytes):
                await producer.send_and_wait(settings.kafka.topic("exceptions"), value, key=b"raw")
            else:
                await producer.send_and_wait(value.topic, value.value, key=value.key, headers=list(value.headers))
    finally:
        await producer.stop()




def test_supervisor_recreates_an_actor_that_is_gone_for_good(settings: Settings) -> None:
    from actors.naming import pool_actor_name
    from tests.integration.helpers import demo_events

    events = demo_events(load_packs_for(settings), count=40, seed=3)
    with running_platform(settings) as deployment:
        pool = deployment.pool("policy")
        old_pid = ray.get(pool.ping.remote())
        ray.kill(pool, no_restart=True)  # Ray will not restart this one: the supervisor must
        wait_until(lambda: _named_actor_pid(pool_actor_name("policy", 0), settings.ray.namespace) not in (None, old_pid), 30)
        publish_events(settings, events)
        counts = wait_for_final(settings, expected=40, timeout_s=90)
        health = ray.get(deployment.supervisor.health.remote())

    assert sum(counts.values()) == 40
    assert health["stages"]["policy"]["pool"] == {"alive": 1, "configured": 1}
    assert health["supervisor"]["actors_recreated"] >= 1


def _named_actor_pid(name: str, namespace: str) -> int | None:
    try:
        return ray.get(ray.get_actor(name, namespace=namespace).ping.remote(), timeout=5)
    except Exception:  # noqa: BLE001 - not there (yet)
        return None
