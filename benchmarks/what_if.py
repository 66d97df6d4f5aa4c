"""What the proposed source fixes would save, measured before anyone applies them.

    python -m benchmarks.what_if [--count 3000] [--batch 500] [--repeat 3]

Runs `benchmarks.stage_cost` (every stage's BatchProcessor, in one process, against a fresh embedded
PostgreSQL per variant) with the fixes recommended in docs/benchmarks.md patched in one after the
other, and prints Python and PostgreSQL CPU per exception for each cumulative variant (each one
measured `--repeat` times, interleaved, in a fresh process; CPU time on a shared 2-vCPU machine varies
by ±15 % between runs, so compare medians and treat differences under ~10 % as noise). The patches
are stand-ins written against the source as it was measured (they replace private functions), not
the fixes themselves: when the source changes, re-check that each still replaces what it names.

1. `unnest_lookups`: the batch lookups by key (`load_exceptions`, `load_playbook_runs`,
   `BatchProcessor._load_known`) as one constant statement joining `unnest(array, array)` (or
   `= ANY(array)`), instead of an expanding `IN (...)` list whose SQL text changes with every batch
   size (re-rendered by SQLAlchemy, re-parsed and re-planned by PostgreSQL as a 500-arm OR).
2. `fast_json`: the engine's JSON serializer/deserializer from pydantic_core (already installed)
   instead of the standard library's `json`.
3. `unnest_event_log`: `event_log` rows inserted with one `INSERT ... SELECT FROM unnest(...)` per
   batch instead of an executemany (one statement execution and one SQLAlchemy parameter set per row).
4. `unnest_processing_log`: the same for `event_processing_log` (its upsert and RETURNING kept).
5. `unnest_updates`: `exceptions` updates as one `UPDATE ... FROM unnest(...)` per column set
   instead of one UPDATE execution per row.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pydantic_core
from pydantic import SecretStr
from sqlalchemy import ARRAY, JSON, String, and_, bindparam, cast, func, select, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

import benchmarks.stage_cost as stage_cost
import pipeline.stages.base as base
import pipeline.stages.playbook as playbook
from benchmarks.services import BenchServices, asyncpg_dsn
from benchmarks.stage_cost import RESULTS_DIR
from pipeline import processing
from pipeline.settings import KafkaSettings, Settings
from pipeline.storage import schema
from pipeline.storage.database import transaction

# --- 1. lookups by key ---------------------------------------------------------------------------


def _keys_join(table: Any) -> Any:
    keys = func.unnest(bindparam("k_tenants", type_=ARRAY(String)), bindparam("k_ids", type_=ARRAY(String)))
    keys = keys.table_valued("tenant_id", "exception_id").render_derived(name="k")
    return select(table).join(keys, and_(table.c.tenant_id == keys.c.tenant_id, table.c.exception_id == keys.c.exception_id))


_LOAD_EXCEPTIONS = _keys_join(schema.exceptions)
_LOAD_RUNS = _keys_join(schema.playbook_runs)


async def _load_by_keys(statement: Any, connection: AsyncConnection, keys: set[tuple[str, str]]) -> dict[Any, dict[str, Any]]:
    if not keys:
        return {}
    ordered = sorted(keys)
    result = await connection.execute(statement, {"k_tenants": [k[0] for k in ordered], "k_ids": [k[1] for k in ordered]})
    return {(row.tenant_id, row.exception_id): dict(row._mapping) for row in result}


async def load_exceptions(connection: AsyncConnection, keys: set[tuple[str, str]]) -> dict[Any, dict[str, Any]]:
    return await _load_by_keys(_LOAD_EXCEPTIONS, connection, keys)


async def load_playbook_runs(connection: AsyncConnection, keys: set[tuple[str, str]]) -> dict[Any, dict[str, Any]]:
    return await _load_by_keys(_LOAD_RUNS, connection, keys)


_epl = schema.event_processing_log
_LOAD_KNOWN = select(_epl.c.event_id, _epl.c.status, _epl.c.retry_count, _epl.c.output_event_ids).where(
    _epl.c.worker_type == bindparam("worker_type"), _epl.c.event_id == func.any(bindparam("ids", type_=ARRAY(String)))
)


async def _load_known(self: processing.BatchProcessor, event_ids: list[str]) -> dict[str, Any]:
    if not event_ids:
        return {}
    async with transaction(self.engine) as connection:
        rows = (await connection.execute(_LOAD_KNOWN, {"worker_type": self.worker_type, "ids": event_ids})).all()
    return {row.event_id: processing._Known(row.status, row.retry_count, list(row.output_event_ids)) for row in rows}


def unnest_lookups() -> None:
    base.load_exceptions = load_exceptions
    base.load_playbook_runs = load_playbook_runs
    playbook.load_playbook_runs = load_playbook_runs
    processing.BatchProcessor._load_known = _load_known  # type: ignore[method-assign]


# --- 2. JSON ---------------------------------------------------------------------------------------


def fast_json() -> None:
    def engine(url: str, settings: Any) -> Any:
        return create_async_engine(
            url, pool_size=settings.pool_size, max_overflow=settings.pool_size, pool_pre_ping=True,
            json_serializer=lambda value: pydantic_core.to_json(value).decode(), json_deserializer=pydantic_core.from_json,
        )

    stage_cost.create_engine = engine  # type: ignore[attr-defined]


# --- 3 and 4. batch inserts -------------------------------------------------------------------------


def _unnest_source(table: Any, columns: list[str]) -> Any:
    """`SELECT v.* FROM unnest($1::t1[], $2::t2[], ...) AS v(c1, c2, ...)`. Array columns travel as
    comma-joined text (unnest would flatten a 2-D array) and JSON columns as JSON text; both are
    converted back in SQL."""
    params, values = [], []
    for column in columns:
        kind = table.c[column].type
        special = isinstance(kind, ARRAY | JSON)
        params.append(bindparam(f"p_{column}", type_=ARRAY(String if special else kind)))
    source = func.unnest(*params).table_valued(*columns).render_derived(name="v")
    for column in columns:
        kind = table.c[column].type
        if isinstance(kind, ARRAY):
            values.append(func.string_to_array(source.c[column], ","))
        elif isinstance(kind, JSON):
            values.append(cast(source.c[column], JSONB))
        else:
            values.append(source.c[column])
    return select(*values)


def _arrays(table: Any, columns: list[str], rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    arrays = {}
    for column in columns:
        kind = table.c[column].type
        values = [row.get(column) for row in rows]
        if isinstance(kind, ARRAY):
            values = [",".join(value or []) for value in values]
        elif isinstance(kind, JSON):
            values = [None if value is None else pydantic_core.to_json(value).decode() for value in values]
        arrays[f"p_{column}"] = values
    return arrays


_EVENT_LOG_COLUMNS = [c.name for c in schema.event_log.c if c.name != "created_at"]
_EVENT_LOG_INSERT = insert(schema.event_log).from_select(
    _EVENT_LOG_COLUMNS, _unnest_source(schema.event_log, _EVENT_LOG_COLUMNS)
).on_conflict_do_nothing()


async def _record_events(self: processing.BatchProcessor, connection: AsyncConnection, fresh: list[Any], outputs: list[Any]) -> None:
    rows = [processing.event_log_row(event, "source") for event, _ in fresh if event.event_type in processing._EXTERNAL_EVENT_TYPES]
    rows += [processing.event_log_row(event, self.worker_type) for event in outputs]
    if rows:
        await connection.execute(_EVENT_LOG_INSERT, _arrays(schema.event_log, _EVENT_LOG_COLUMNS, rows))


def unnest_event_log() -> None:
    processing.BatchProcessor._record_events = _record_events  # type: ignore[method-assign]


_PROCESSING_STATEMENTS: dict[tuple[str, ...], Any] = {}


async def _record_processing(self: processing.BatchProcessor, connection: AsyncConnection, rows: list[dict[str, Any]],
                             known: dict[str, Any]) -> None:
    if not rows:
        return
    columns = tuple(rows[0])
    statement = _PROCESSING_STATEMENTS.get(columns)
    if statement is None:
        table = schema.event_processing_log
        statement = insert(table).from_select(list(columns), _unnest_source(table, list(columns)))
        statement = statement.on_conflict_do_update(
            constraint="uq_event_processing_event_worker",
            set_={column: statement.excluded[column] for column in columns if column not in ("event_id", "worker_type")},
            where=table.c.status == "retrying",
        ).returning(table.c.event_id)
        _PROCESSING_STATEMENTS[columns] = statement
    claimed = {row.event_id for row in await connection.execute(statement, _arrays(schema.event_processing_log, list(columns), rows))}
    lost = [row["event_id"] for row in rows if row["event_id"] not in claimed]
    if lost:
        raise processing.ConcurrentProcessingError(f"{len(lost)} event(s) were recorded by another worker, e.g. {lost[0]}")


def unnest_processing_log() -> None:
    processing.BatchProcessor._record_processing = _record_processing  # type: ignore[method-assign]


# --- 5. updates -------------------------------------------------------------------------------------


_UPDATE_STATEMENTS: dict[tuple[str, ...], Any] = {}


def _update_statement(columns: tuple[str, ...]) -> Any:
    statement = _UPDATE_STATEMENTS.get(columns)
    if statement is None:
        table = schema.exceptions
        keyed = ("tenant_id", "exception_id", *columns, "updated_at")
        source = _unnest_source(table, list(keyed)).subquery("v")
        statement = (
            update(table)
            .where(and_(table.c.tenant_id == source.c.tenant_id, table.c.exception_id == source.c.exception_id))
            .values({column: source.c[column] for column in (*columns, "updated_at")})
        )
        _UPDATE_STATEMENTS[columns] = statement
    return statement


async def _flush_exception_updates(self: base.BatchState, connection: AsyncConnection) -> None:
    by_columns: dict[tuple[str, ...], list[Any]] = defaultdict(list)
    for key, columns in self._dirty_exception_columns.items():
        if columns:
            by_columns[tuple(sorted(columns))].append(key)
    for columns, keys in by_columns.items():
        rows = [{"tenant_id": key[0], "exception_id": key[1], "updated_at": self.now}
                | {column: self.exceptions[key][column] for column in columns} for key in sorted(keys)]
        keyed = ["tenant_id", "exception_id", *columns, "updated_at"]
        await connection.execute(_update_statement(columns), _arrays(schema.exceptions, keyed, rows))


def unnest_updates() -> None:
    base.BatchState._flush_exception_updates = _flush_exception_updates  # type: ignore[method-assign]


VARIANTS: list[tuple[str, Callable[[], None] | None]] = [
    ("as measured", None),
    ("+ unnest_lookups", unnest_lookups),
    ("+ fast_json", fast_json),
    ("+ unnest_event_log", unnest_event_log),
    ("+ unnest_processing_log", unnest_processing_log),
    ("+ unnest_updates", unnest_updates),
]


async def _outcome(dsn: str) -> dict[str, int]:
    """What the run left in the database, to check that a variant changes cost and nothing else."""
    connection = await asyncpg.connect(dsn)
    try:
        counts = {f"status:{row['status']}": row["n"] for row in
                  await connection.fetch("SELECT status, count(*) AS n FROM exceptions GROUP BY 1")}
        for table in ("event_log", "event_processing_log", "feedback", "playbook_runs", "tool_executions", "dead_letter_queue"):
            counts[table] = await connection.fetchval(f"SELECT count(*) FROM {table}")
        return counts
    finally:
        await connection.close()


def run_variant(count: int, batch: int, seed: int) -> dict[str, Any]:
    run_dir = Path(tempfile.mkdtemp(prefix="sentinai-whatif-", dir="/tmp"))
    services = BenchServices(run_dir)
    try:
        url = services.start_database(None, commit_timestamps=False)
        settings = Settings(data_dir=run_dir, kafka=KafkaSettings(bootstrap_servers="127.0.0.1:9"),
                            database={"url": SecretStr(url), "pool_size": 2})  # type: ignore[arg-type]
        asyncio.run(stage_cost._prepare(settings))
        result = stage_cost.measure(settings, count, batch, seed, services.postmaster_pid(), None)
        result["outcome"] = asyncio.run(_outcome(asyncpg_dsn(url)))
        return result
    finally:
        services.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


def _variant_in_subprocess(index: int, args: argparse.Namespace) -> dict[str, Any]:
    """One measurement of variant `index` (its patches and all before it) in a fresh interpreter:
    the patches cannot be undone in-process, and a fresh process keeps the runs independent."""
    command = [sys.executable, "-m", "benchmarks.what_if", "--variant", str(index), "--count", str(args.count),
               "--batch", str(args.batch), "--seed", str(args.seed)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=True,
                               cwd=Path(__file__).resolve().parents[1])
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.what_if", description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--repeat", type=int, default=3, help="measurements per variant, interleaved (default 3)")
    parser.add_argument("--variant", type=int, help=argparse.SUPPRESS)  # internal: measure one variant, print JSON
    args = parser.parse_args(argv)
    if args.variant is not None:
        for _, patch in VARIANTS[: args.variant + 1]:
            if patch is not None:
                patch()
        result = run_variant(args.count, args.batch, args.seed)
        print(json.dumps({"per_exception": result["per_exception"], "outcome": result["outcome"]}))
        return 0
    runs: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for _ in range(args.repeat):
        for index in range(len(VARIANTS)):
            runs[index].append(_variant_in_subprocess(index, args))
    reference = runs[0][0]["outcome"]
    print("| variant (cumulative) | Python CPU µs/exception (min / median) | PostgreSQL CPU µs/exception (min / median) "
          "| total (sum of medians) |")
    print("|---|---|---|---|")
    summary = []
    for index, (name, _) in enumerate(VARIANTS):
        python = sorted(run["per_exception"]["python_cpu_us"] for run in runs[index])
        postgres = sorted(run["per_exception"]["postgres_cpu_us"] for run in runs[index])
        mid = len(python) // 2
        print(f"| {name} | {python[0]:.0f} / {python[mid]:.0f} | {postgres[0]:.0f} / {postgres[mid]:.0f} "
              f"| {python[mid] + postgres[mid]:.0f} |")
        same = all(run["outcome"] == reference for run in runs[index])
        summary.append({"variant": name, "python_cpu_us": python, "postgres_cpu_us": postgres, "same_outcome": same})
        if not same:
            print(f"  outcome of {name} differs from the first variant's")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "what-if.json").write_text(json.dumps({"count": args.count, "batch": args.batch, "variants": summary,
                                                          "outcome": reference}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
