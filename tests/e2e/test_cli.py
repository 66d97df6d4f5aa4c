"""The `sentinai` command as an operator runs it: `up` in the foreground, `submit`, `dlq`, SIGTERM and
SIGKILL. The platform runs in its own process with its own local Ray, against the test's broker and a
fresh database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import pytest

from cluster.embedded import BundledBroker, free_port
from tests.integration.helpers import FINAL_STATUSES

pytestmark = pytest.mark.e2e

SENTINAI = [sys.executable, "-m", "cluster.cli"]


def _environment(broker: BundledBroker, database_url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTINAI_")}
    env.update(
        DATABASE_URL=database_url,
        KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers,
        RAY_AUTH_MODE="disabled",
        SENTINAI_DATA_DIR=str(tmp_path / "data"),
        SENTINAI_KAFKA__TOPIC_PREFIX=f"e2e{os.getpid()}{tmp_path.name[-6:]}.",
        SENTINAI_KAFKA__PARTITIONS="4",
        SENTINAI_KAFKA__SESSION_TIMEOUT_MS="3000",
        SENTINAI_KAFKA__HEARTBEAT_INTERVAL_MS="500",
        SENTINAI_RAY__INCLUDE_DASHBOARD="false",
        SENTINAI_RAY__NUM_CPUS="4",
        SENTINAI_SHUTDOWN_GRACE_S="20",
        SENTINAI_SLA__INTERVAL_S="1",
        SENTINAI_SERVE__PORT=str(free_port()),
    )
    return env


@contextmanager
def platform_process(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`sentinai up` in the background; killed (with everything it started) if the test leaves it."""
    with log_path.open("ab") as log:
        process = subprocess.Popen([*SENTINAI, "up"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for_log(log_path, "platform running", process, timeout_s=120)
        yield process
    finally:
        if process.poll() is None:
            _kill_tree(process.pid)


def test_submit_process_dlq_and_sigterm(broker: BundledBroker, database: str, tmp_path: Path) -> None:
    env = _environment(broker, database, tmp_path)
    good = [_line("FIN_ACME", f"E2E-{i}", "SETTLEMENT_FAILURE") for i in range(8)]
    lines = [*good[:4], "this is not json", json.dumps({"tenant_id": "NOBODY", "exception": {"exception_id": "X"}}),
             *good[4:]]
    submission = tmp_path / "exceptions.jsonl"
    submission.write_text("\n".join(lines) + "\n")
    log_path = tmp_path / "up.log"

    with platform_process(env, log_path) as process:
        submitted = subprocess.run([*SENTINAI, "submit", str(submission), "--no-progress"], env=env,
                                   capture_output=True, text=True, timeout=60)
        assert submitted.returncode == 1  # some lines were rejected
        assert "sent 8 exception(s), rejected 2 line(s)" in submitted.stdout
        assert "line 5: not JSON" in submitted.stderr
        assert "line 6: tenant 'NOBODY' is not registered" in submitted.stderr
        _wait_until(lambda: _final_count(env) == 8, 90)

        stats = subprocess.run([*SENTINAI, "dlq", "stats"], env=env, capture_output=True, text=True, timeout=60)
        assert stats.returncode == 0 and json.loads(stats.stdout)["size"] == 0

        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        assert time.monotonic() - started < 45
    log = log_path.read_text()
    assert "received SIGTERM: stopping gracefully" in log and "stopped" in log
    assert "still in flight" not in log  # nothing was left for redelivery


def test_the_sla_monitor_worker_serves_the_operations_api(broker: BundledBroker, database: str, tmp_path: Path) -> None:
    # The runbook starts its workers one by one and then asks :8000/health/workers: with no
    # `sentinai up`, the control worker (supervisor, SLA monitor) serves the API.
    env = {**_environment(broker, database, tmp_path), "WORKER_TYPE": "sla_monitor"}
    log_path = tmp_path / "worker.log"
    base = f"http://127.0.0.1:{env['SENTINAI_SERVE__PORT']}"
    with log_path.open("ab") as log:
        process = subprocess.Popen([*SENTINAI, "worker"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for_log(log_path, "platform running", process, timeout_s=120)
        assert httpx.get(f"{base}/health", timeout=10).json() == {"status": "ok"}
        assert httpx.get(f"{base}/health/db", timeout=10).status_code == 200
        # No stage worker runs yet: every stage is reported, and the platform is down.
        workers = httpx.get(f"{base}/health/workers", timeout=15)
        assert workers.status_code == 503, workers.text
        report = workers.json()
        assert report["status"] == "down" and report["supervisor"]["pid"] > 0
        assert all(stage["consumers"]["alive"] == 0 for stage in report["stages"].values())
        assert len(report["stages"]) == 6
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            _kill_tree(process.pid)
    assert "operations API on http://" in log_path.read_text()


def test_sigkill_of_the_whole_platform_loses_nothing(broker: BundledBroker, database: str, tmp_path: Path) -> None:
    env = _environment(broker, database, tmp_path)
    log_path = tmp_path / "up.log"

    total = 600  # 150/s for 4 s: the platform is killed while the demo is still publishing
    with platform_process(env, log_path) as process:
        demo = subprocess.Popen([*SENTINAI, "demo", "--rate", "150", "--duration", "4", "--seed", "3", "--no-progress"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_until(lambda: _final_count(env) >= 30, 90)
            _kill_tree(process.pid)  # the driver, the local Ray cluster and every actor, at once
        finally:
            assert demo.wait(timeout=60) == 0
    assert _final_count(env) < total

    with platform_process(env, log_path):
        _wait_until(lambda: _final_count(env) == total, 150)

    counts = _query(env, "SELECT count(*) AS n, count(DISTINCT exception_id) AS d FROM event_log WHERE event_type = 'TriageCompleted'")
    assert counts == [{"n": total, "d": total}]
    duplicates = _query(env, "SELECT event_id FROM event_processing_log GROUP BY event_id, worker_type HAVING count(*) > 1")
    assert duplicates == []


def _line(tenant: str, exception_id: str, hint: str) -> str:
    attributes = {"trade_id": "TRD-1", "csd": "DTC", "intended_settlement_date": "2026-11-27", "amount": 1200.0,
                  "currency": "USD", "isin": "US0378331005", "quantity": 100}
    return json.dumps({"tenant_id": tenant, "exception": {"exception_id": exception_id, "source_system": "e2e",
                                                          "exception_type": hint, "description": f"{hint} {exception_id}",
                                                          "attributes": attributes}})


def _final_count(env: dict[str, str]) -> int:
    rows = _query(env, "SELECT count(*) AS n FROM exceptions WHERE status = ANY($1::text[])", list(FINAL_STATUSES))
    return int(rows[0]["n"])


def _query(env: dict[str, str], sql: str, *args: object) -> list[dict[str, object]]:
    import asyncio

    import asyncpg

    async def run() -> list[dict[str, object]]:
        connection = await asyncpg.connect(env["DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return [dict(row) for row in await connection.fetch(sql, *args)]
        finally:
            await connection.close()

    return asyncio.run(run())


def _kill_tree(pid: int) -> None:
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    processes = [root, *root.children(recursive=True)]
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(processes, timeout=15)


def _wait_for_log(path: Path, text: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return
        if process.poll() is not None:
            raise AssertionError(f"sentinai up exited with {process.returncode}:\n{path.read_text()[-4000:]}")
        time.sleep(0.5)
    raise AssertionError(f"{text!r} not logged within {timeout_s}s:\n{path.read_text()[-4000:]}")


def _wait_until(condition, timeout_s: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"condition not met within {timeout_s}s")

