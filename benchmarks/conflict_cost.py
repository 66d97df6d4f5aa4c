"""What `ON CONFLICT DO NOTHING` costs PostgreSQL per row of a batch's `event_log` insert.

Every batch inserts its output events into `event_log` with `ON CONFLICT DO NOTHING`, which makes
PostgreSQL look each new key up in the primary key before it inserts the row (a second descent of
the index). This measures the backend's CPU per row of the platform's own statement (`bulk`, rows
from `event_log_row` of derived events), with and without the clause, in batches into two copies of
the migrated `event_log`, interleaved so a slow moment of the machine does not favour one way.

    python -m benchmarks.conflict_cost [--database-url postgresql://postgres@127.0.0.1:5432/postgres]

It creates a scratch database on that server (the backend must run on this machine: its CPU is read
through psutil) and drops it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psutil
from sqlalchemy import MetaData, text

from benchmarks.report import print_and_save
from benchmarks.resources import process_cpu_s
from pipeline.events import EventEnvelope, EventType
from pipeline.settings import DatabaseSettings
from pipeline.storage import bulk, schema
from pipeline.storage.database import autocommit, create_engine
from pipeline.storage.event_store import event_log_row
from pipeline.storage.migrate import upgrade_to_head

_SCRATCH_DATABASE = "sentinai_conflict_cost"
_WAYS = {"ON CONFLICT DO NOTHING (now)": bulk.do_nothing(), "plain INSERT": ""}


def _batch(size: int) -> list[dict[str, Any]]:
    """`size` output events as a stage derives them, one per exception, as `event_log` rows."""
    now = datetime.now(UTC)
    rows = []
    for _ in range(size):
        parent = EventEnvelope(
            event_id=str(uuid.uuid4()), event_type=EventType.TRIAGE_COMPLETED, tenant_id="FIN_ACME",
            exception_id=f"EXC-{uuid.uuid4().hex[:12]}", timestamp=now,
            payload={"severity": "HIGH", "exception_type": "SETTLEMENT_FAIL", "confidence": 0.92,
                     "rationale": "keyword match: settlement failed, counterparty did not deliver"},
            metadata={"source": "benchmark"},
        )
        output = parent.derive(EventType.PLAYBOOK_MATCHED, stage="policy", position=0,
                               payload={"playbook_id": "settlement_fail_standard", "approval_required": False}, now=now)
        rows.append(event_log_row(output, "policy"))
    return rows


async def _measure(url: str, *, batches: int, batch_size: int, rounds: int) -> dict[str, float]:
    engine = create_engine(url, DatabaseSettings())
    try:
        await upgrade_to_head(engine)
        async with autocommit(engine) as connection:
            copies = {}
            for index, way in enumerate(_WAYS):
                name = f"event_log_copy_{index}"
                await connection.execute(text(f"CREATE TABLE {name} (LIKE event_log INCLUDING ALL)"))
                copies[way] = schema.event_log.to_metadata(MetaData(), name=name)
            backend = psutil.Process((await connection.exec_driver_sql("SELECT pg_backend_pid()")).scalar_one())
            best = {way: float("inf") for way in _WAYS}
            for _ in range(rounds):
                for way, conflict in _WAYS.items():
                    spent = 0.0
                    for _ in range(batches):
                        rows = _batch(batch_size)
                        started = process_cpu_s(backend)
                        await bulk.insert_rows(connection, copies[way], rows, conflict=conflict)
                        spent += process_cpu_s(backend) - started
                    best[way] = min(best[way], 1e6 * spent / (batches * batch_size))
            return best
    finally:
        await engine.dispose()


async def _run(admin_url: str, **options: int) -> dict[str, float]:
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {_SCRATCH_DATABASE}")
        await admin.execute(f"CREATE DATABASE {_SCRATCH_DATABASE}")
        parts = urlsplit(admin_url)
        scratch_url = urlunsplit(("postgresql+asyncpg", parts.netloc, f"/{_SCRATCH_DATABASE}", parts.query, parts.fragment))
        return await _measure(scratch_url, **options)
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {_SCRATCH_DATABASE}")
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.conflict_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="admin URL of a PostgreSQL on this machine (default: the machine's, database postgres)")
    # The backend's CPU is read in clock ticks (10 ms): 150 batches of 400 rows take about a second.
    parser.add_argument("--batches", type=int, default=150, help="batches per way and round (default 150)")
    parser.add_argument("--batch-size", type=int, default=400, help="rows per batch (default 400)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each way once per round; the fastest counts (default 3)")
    parser.add_argument("--output", default="benchmarks/results/conflict-cost.json")
    args = parser.parse_args()
    started = time.monotonic()
    best = asyncio.run(_run(args.database_url, batches=args.batches, batch_size=args.batch_size, rounds=args.rounds))
    results = {way: {"backend_cpu_us_per_row": round(us, 2)} for way, us in best.items()}
    print_and_save("way", {"backend_cpu_us_per_row": "PostgreSQL CPU µs per row"}, results,
                   {**vars(args), "seconds": round(time.monotonic() - started, 1)}, args.output)


if __name__ == "__main__":
    main()
