"""What the database says about a run: which exceptions reached a final state and when, and how long
each stage took.

Clocks: publish times come from the driver's `time.time()`; `completed_at` is written by the stage
actors with `utc_now()` on the same machine, so differences between them are meaningful. Note that
a stage stamps `completed_at` (and its output events' `event_timestamp`) with the time its *batch
started* (`BatchState.now`), not the commit time: the end-to-end figure from `completed_at` leaves out
the last batch's own processing and commit. With `track_commit_timestamp = on` the commit time of
each row is known as well (`pg_xact_commit_timestamp(xmin)`) and reported beside it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import numpy as np

FINAL_STATUSES = ["resolved", "pending_external", "awaiting_approval", "escalated", "rejected", "non_actionable"]
# Statuses whose story ends with a feedback record (awaiting_approval waits for a human instead).
FEEDBACK_STATUSES = ["resolved", "pending_external", "escalated", "rejected", "non_actionable"]

_DONE_SQL = """
SELECT count(*) FILTER (WHERE x.status = ANY($1::text[])
                          AND (x.status <> ALL($2::text[]) OR f.exception_id IS NOT NULL)) AS done,
       count(*) AS seen
FROM exceptions x LEFT JOIN feedback f USING (tenant_id, exception_id)
"""

_DONE_ESTIMATE_SQL = """
SELECT (SELECT count(*) FROM feedback) + (SELECT count(*) FROM playbook_runs WHERE status = 'awaiting_approval')
"""

_FINAL_SQL = """
SELECT x.tenant_id, x.exception_id, x.status,
       extract(epoch FROM max(p.completed_at))::float8 AS final_at,
       count(p.id) AS events,
       coalesce(bool_or(p.worker_type = 'feedback' AND p.status = 'completed'), false) AS has_feedback
       {commit_column}
FROM exceptions x LEFT JOIN event_processing_log p USING (tenant_id, exception_id)
GROUP BY 1, 2, 3
"""
_COMMIT_COLUMN = ", extract(epoch FROM max(pg_xact_commit_timestamp(p.xmin)))::float8 AS commit_at"

_PERCENTILES = "percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY {expr})"

_HOP_SQL = f"""
SELECT p.worker_type, p.event_type, count(*) AS n,
       {_PERCENTILES.format(expr="extract(epoch FROM p.completed_at - e.event_timestamp) * 1000")} AS hop_ms
FROM event_processing_log p JOIN event_log e ON e.event_id = p.event_id
WHERE p.status = 'completed' AND p.worker_type <> 'intake' AND p.completed_at >= to_timestamp($1)
GROUP BY 1, 2 ORDER BY 1, 2
"""

_DURATION_SQL = f"""
SELECT worker_type, count(*) AS n, {_PERCENTILES.format(expr="duration_ms")} AS duration_ms
       {{commit_column}}
FROM event_processing_log
WHERE status = 'completed' AND completed_at >= to_timestamp($1)
GROUP BY 1
"""
_BATCH_COMMIT_COLUMN = ", " + _PERCENTILES.format(
    expr="extract(epoch FROM pg_xact_commit_timestamp(xmin) - completed_at) * 1000"
) + " AS start_to_commit_ms"


async def _connect(dsn: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn, timeout=15, command_timeout=300)


async def wait_until_done(dsn: str, expected: int, timeout_s: float, poll_s: float = 2.0) -> tuple[int, float]:
    """Poll until `expected` exceptions are done (final status, and feedback recorded where one is due)
    or `timeout_s` passes. Returns (done, time.time() of the last poll).

    The exact check joins `exceptions` (wide rows: a sequential scan of ~100 MB at 60k exceptions)
    with `feedback`; run every second it cost PostgreSQL ~18 % of a core while the pipeline was still
    draining. So the poll counts two narrow tables (every exception ends with a feedback row or an
    awaiting-approval playbook run) and runs the exact check only once that estimate is reached."""
    connection = await _connect(dsn)
    try:
        deadline = time.monotonic() + timeout_s
        done = 0
        while True:
            estimate = await connection.fetchval(_DONE_ESTIMATE_SQL)
            if estimate >= expected or time.monotonic() >= deadline:
                row = await connection.fetchrow(_DONE_SQL, FINAL_STATUSES, FEEDBACK_STATUSES)
                done = int(row["done"])
                if done >= expected or time.monotonic() >= deadline:
                    return done, time.time()
            await asyncio.sleep(poll_s)
    finally:
        await connection.close()


async def collect(dsn: str, *, window_start: float, window_end: float, commit_timestamps: bool) -> dict[str, Any]:
    """Everything the report needs, read once the run has drained."""
    connection = await _connect(dsn)
    try:
        commit = _COMMIT_COLUMN if commit_timestamps else ""
        finals = await connection.fetch(_FINAL_SQL.format(commit_column=commit))
        intake = await connection.fetch(
            "SELECT tenant_id, exception_id, extract(epoch FROM completed_at)::float8 AS at FROM event_processing_log "
            "WHERE worker_type = 'intake' AND status = 'completed'"
        )
        hops = await connection.fetch(_HOP_SQL, window_start)
        durations = await connection.fetch(
            _DURATION_SQL.format(commit_column=_BATCH_COMMIT_COLUMN if commit_timestamps else ""), window_start
        )
        events_in_window = await connection.fetchval(
            "SELECT count(*) FROM event_processing_log WHERE status = 'completed' "
            "AND completed_at BETWEEN to_timestamp($1) AND to_timestamp($2)", window_start, window_end,
        )
        events_span = await connection.fetchrow(
            "SELECT count(*) AS n, extract(epoch FROM max(completed_at))::float8 AS last FROM event_processing_log "
            "WHERE status = 'completed' AND completed_at >= to_timestamp($1)", window_start,
        )
        processing_statuses = await connection.fetch("SELECT status, count(*) AS n FROM event_processing_log GROUP BY 1")
        dlq = await connection.fetch(
            "SELECT worker_type, error_type, count(*) AS n FROM dead_letter_queue GROUP BY 1, 2 ORDER BY 3 DESC"
        )
        # A tenant held back by its rate limit would measure the limit, not the pipeline.
        rate_limited = await connection.fetch(
            "SELECT tenant_id, sum(value)::bigint AS n FROM metric_counters WHERE name = 'rate_limited_events_total' "
            "GROUP BY 1 ORDER BY 1"
        )
    finally:
        await connection.close()
    return {
        "finals": finals,
        "intake": {(row["tenant_id"], row["exception_id"]): row["at"] for row in intake},
        "hops": [
            {"stage": row["worker_type"], "input": row["event_type"], "events": row["n"], "hop_ms": _triple(row["hop_ms"])}
            for row in hops
        ],
        "durations": {
            row["worker_type"]: {
                "events": row["n"],
                "duration_ms": _triple(row["duration_ms"]),
                **({"batch_start_to_commit_ms": _triple(row["start_to_commit_ms"])} if commit_timestamps else {}),
            }
            for row in durations
        },
        "events_in_window": int(events_in_window),
        "events_since_start": int(events_span["n"]),
        "events_last_at": events_span["last"],
        "processing_statuses": {row["status"]: row["n"] for row in processing_statuses},
        "dlq": [{"stage": row["worker_type"], "error_type": row["error_type"], "count": row["n"]} for row in dlq],
        "rate_limited": {row["tenant_id"]: int(row["n"]) for row in rate_limited},
    }


_STATEMENTS_SQL = """
SELECT calls, rows, round(total_exec_time::numeric, 1) AS exec_ms, round(total_plan_time::numeric, 1) AS plan_ms,
       plans, left(regexp_replace(query, '\\s+', ' ', 'g'), 160) AS query
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY total_exec_time + total_plan_time DESC
LIMIT $1
"""


async def statement_stats(dsn: str, limit: int = 15) -> list[dict[str, Any]]:
    """The statements the server spent most time on (pg_stat_statements), with their planning time."""
    connection = await _connect(dsn)
    try:
        rows = await connection.fetch(_STATEMENTS_SQL, limit)
    finally:
        await connection.close()
    return [{key: (float(value) if key.endswith("_ms") else value) for key, value in row.items()} for row in rows]


def _triple(values: list[float] | None) -> dict[str, float | None]:
    values = values or [None, None, None]
    return {"p50": _round(values[0]), "p95": _round(values[1]), "p99": _round(values[2])}


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 2)


def distribution_ms(seconds: list[float]) -> dict[str, float | int | None]:
    """p50/p95/p99/max/mean in milliseconds of a list of durations in seconds."""
    if not seconds:
        return {"count": 0, "p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    values = np.asarray(seconds) * 1000.0
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"count": int(values.size), "p50": round(float(p50), 1), "p95": round(float(p95), 1),
            "p99": round(float(p99), 1), "max": round(float(values.max()), 1), "mean": round(float(values.mean()), 1)}
