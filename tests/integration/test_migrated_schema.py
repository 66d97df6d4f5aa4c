"""The database the migrations build, against what `pipeline.storage.schema` declares: the same column
types and indexes, and the keys the statements rely on."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import Column

from pipeline.settings import DatabaseSettings
from pipeline.storage import bulk, schema
from pipeline.storage.database import create_engine

pytestmark = pytest.mark.integration


def _rows(database: str, *statements: str) -> list[list[tuple[Any, ...]]]:
    """Each statement's rows, run in order on one connection whose changes are rolled back."""

    async def run() -> list[list[tuple[Any, ...]]]:
        engine = create_engine(database, DatabaseSettings())
        try:
            results = []
            async with engine.connect() as connection:
                for sql in statements:
                    result = await connection.exec_driver_sql(sql)
                    results.append([tuple(row) for row in result] if result.returns_rows else [])
                await connection.rollback()
            return results
        finally:
            await engine.dispose()

    return asyncio.run(run())


_SQLALCHEMY_TO_POSTGRES = (("VARCHAR", "character varying"), ("TIMESTAMP WITH TIME ZONE", "timestamp with time zone"),
                           ("FLOAT", "double precision"))


def _declared_type(column: Column[Any]) -> str:
    compiled = column.type.compile(dialect=bulk._DIALECT)
    for ours, theirs in _SQLALCHEMY_TO_POSTGRES:
        compiled = compiled.replace(ours, theirs)
    return compiled.lower()


def test_the_migrated_database_has_the_column_types_the_schema_declares(database: str) -> None:
    """`bulk` casts each value to the type `schema` declares (jsonb, varchar(n), a timestamp), so the
    migrations and `schema.py` must agree on every column."""
    [rows] = _rows(
        database,
        "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid WHERE c.relnamespace = current_schema()::regnamespace "
        "AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped")
    migrated = {(table, column): type_name for table, column, type_name in rows}
    declared = {(table.name, column.name): _declared_type(column) for table in schema.metadata.tables.values()
                for column in table.columns}
    assert {key: migrated.get(key) for key in declared} == declared
    assert declared[("event_log", "payload")] == "jsonb" and declared[("exceptions", "tenant_id")] == "character varying(64)"


def test_the_migrated_database_has_the_indexes_the_schema_declares(database: str) -> None:
    """Every index costs each write of its table, so the migrations create exactly the indexes
    `schema.py` declares: none it dropped (migrations 0009 and 0010), none it lacks."""
    [rows] = _rows(
        database,
        "SELECT tablename, indexname FROM pg_indexes WHERE schemaname = current_schema() "
        "AND indexname NOT IN (SELECT conname FROM pg_constraint)")
    declared = {(table.name, index.name) for table in schema.metadata.tables.values() for index in table.indexes}
    assert set(rows) == declared
    assert ("exceptions", "ix_exceptions_sla_next_check") in declared
    assert ("exceptions", "ix_exceptions_open_sla") not in declared
    assert ("event_processing_log", "ix_epl_exception") not in declared


def test_the_processing_log_is_keyed_by_event_and_stage_alone(database: str) -> None:
    """Migration 0010: no index on `id` (the sequence still numbers the rows), the unique
    `(event_id, worker_type)` is the key and the replica identity."""
    constraints, identity, _, numbered = _rows(
        database,
        "SELECT conname, contype::text FROM pg_constraint WHERE conrelid = 'event_processing_log'::regclass "
        "AND contype IN ('p', 'u')",
        "SELECT i.indexrelid::regclass::text FROM pg_index i "
        "WHERE i.indrelid = 'event_processing_log'::regclass AND i.indisreplident",
        "INSERT INTO event_processing_log (event_id, worker_type, event_type, tenant_id, exception_id, status) "
        "VALUES ('evt-0010-check', 'intake', 'ExceptionIngested', 'T', 'E', 'completed')",
        "SELECT id FROM event_processing_log WHERE event_id = 'evt-0010-check'")
    assert set(constraints) == {("uq_event_processing_event_worker", "u")}
    assert identity == [("uq_event_processing_event_worker",)]
    assert numbered[0][0] > 0
