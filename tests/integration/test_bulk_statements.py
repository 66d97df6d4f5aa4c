"""pipeline.storage.bulk against the real PostgreSQL: what one statement per batch writes and reads
back (JSON, arrays, NULLs, conflicts), and that a key lookup stays an index probe per key."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import (
    ARRAY,
    Boolean,
    Column,
    DateTime,
    Enum,
    Float,
    LargeBinary,
    MetaData,
    String,
    Table,
    event,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from pipeline.settings import DatabaseSettings
from pipeline.storage import bulk, schema
from pipeline.storage.database import create_engine

pytestmark = pytest.mark.integration

_NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


def _processing_row(event_id: str, status: str, outputs: list[str]) -> dict[str, object]:
    return {
        "event_id": event_id, "worker_type": "triage", "event_type": "ExceptionNormalized", "tenant_id": "FIN_ACME",
        "exception_id": f"X-{event_id}", "status": status, "retry_count": 0, "error_type": None,
        "error_message": None, "next_retry_at": None, "last_attempt_at": _NOW, "duration_ms": 1.5,
        "output_event_ids": outputs, "topic": "sentinai.triage", "partition": 3, "offset": 2**40, "completed_at": _NOW,
    }


def _exception_row(exception_id: str, attributes: dict[str, object]) -> dict[str, object]:
    return {"tenant_id": "FIN_ACME", "exception_id": exception_id, "status": "open", "attributes": attributes,
            "policy_reasons": None, "created_at": _NOW, "updated_at": _NOW}


def _remember_statements(connection: AsyncConnection) -> tuple[list[tuple[str, Any]], Callable[[], None]]:
    """Every statement `connection` sends from now on, with its parameters; and how to stop listening."""
    sync = connection.sync_connection
    assert sync is not None
    statements: list[tuple[str, Any]] = []

    def remember(conn: object, cursor: object, statement: str, parameters: Any, *args: object) -> None:
        statements.append((statement, parameters))

    event.listen(sync, "before_cursor_execute", remember)
    return statements, lambda: event.remove(sync, "before_cursor_execute", remember)


def test_array_elements_survive_the_literal_they_travel_in(database: str) -> None:
    awkward = ['plain', 'with "quotes"', "back\\slash", "comma,brace}{", " spaced ", "", "NULL", "é☃"]

    async def scenario() -> None:
        engine = create_engine(database, DatabaseSettings())
        try:
            async with engine.connect() as connection:
                await bulk.insert_rows(connection, schema.event_processing_log,
                                       [_processing_row("arr1", "completed", awkward), _processing_row("arr2", "completed", [])],
                                       conflict=bulk.do_nothing())
                rows = await bulk.select_by_keys(connection, schema.event_processing_log, ("worker_type", "event_id"),
                                                 [("triage", "arr1"), ("triage", "arr2")], columns=("event_id", "output_event_ids"))
                assert {row.event_id: row.output_event_ids for row in rows} == {"arr1": awkward, "arr2": []}
                await connection.rollback()
        finally:
            await engine.dispose()

    asyncio.run(scenario())


def test_rows_written_in_one_statement_read_back_exactly(database: str) -> None:
    async def scenario() -> None:
        engine = create_engine(database, DatabaseSettings())
        table = schema.event_processing_log
        conflict = bulk.do_update(table, (), ("status", "output_event_ids"), constraint="uq_event_processing_event_worker",
                                  where="event_processing_log.status = 'retrying'")
        try:
            async with engine.begin() as connection:
                claimed = await bulk.insert_rows(
                    connection, table, [_processing_row("e1", "retrying", []), _processing_row("e2", "completed", ["o1", "o2"])],
                    conflict=conflict, returning=("event_id",),
                )
                assert sorted(row.event_id for row in claimed) == ["e1", "e2"]
                # e1 was retrying: overwritten; e2 was completed: left alone, and not returned.
                again = await bulk.insert_rows(
                    connection, table, [_processing_row("e1", "completed", ["o3"]), _processing_row("e2", "completed", [])],
                    conflict=conflict, returning=("event_id",),
                )
                assert [row.event_id for row in again] == ["e1"]
                rows = await bulk.select_by_keys(connection, table, ("worker_type", "event_id"),
                                                 [("triage", "e1"), ("triage", "e2"), ("triage", "missing"), ("triage", "e1")])
                by_id = {row.event_id: row for row in rows}
                assert sorted(by_id) == ["e1", "e2"]
                assert by_id["e1"].status == "completed" and by_id["e1"].output_event_ids == ["o3"]
                assert by_id["e2"].output_event_ids == ["o1", "o2"] and by_id["e2"].offset == 2**40

                exceptions = schema.exceptions
                await bulk.insert_rows(connection, exceptions, [_exception_row("A", {"amount": 1.5, "tags": ["x"]}),
                                                                _exception_row("B", {})], conflict=bulk.do_nothing())
                await bulk.update_rows(connection, exceptions, ("tenant_id", "exception_id"), ("status", "policy_reasons"),
                                       [{"tenant_id": "FIN_ACME", "exception_id": "B", "status": "resolved",
                                         "policy_reasons": ["CRITICAL severity"]}])
                rows = await bulk.select_by_keys(connection, exceptions, ("tenant_id", "exception_id"),
                                                 [("FIN_ACME", "A"), ("FIN_ACME", "B")], order_by=("exception_id",))
                assert [(row.exception_id, row.status, row.attributes, row.policy_reasons) for row in rows] == [
                    ("A", "open", {"amount": 1.5, "tags": ["x"]}, None),
                    ("B", "resolved", {}, ["CRITICAL severity"]),
                ]
                # None in a JSON column is SQL NULL, not JSON null.
                assert (await connection.exec_driver_sql(
                    "SELECT count(*) FROM exceptions WHERE policy_reasons IS NULL")).scalar_one() == 1
        finally:
            await engine.dispose()

    asyncio.run(scenario())


def test_key_lookup_probes_the_primary_key_even_with_stale_statistics(database: str) -> None:
    """The statistics say the table is empty (analysed before 20,000 rows arrived): a plain join or
    an IN list would then use the wrong index or scan; the lookup must still probe per key."""
    async def scenario() -> None:
        engine = create_engine(database, DatabaseSettings())
        try:
            async with engine.begin() as connection:
                await connection.exec_driver_sql("ANALYZE exceptions")
                await connection.exec_driver_sql(
                    "INSERT INTO exceptions (tenant_id, exception_id, status) "
                    "SELECT 'T' || (i % 3), 'E' || i, 'open' FROM generate_series(1, 20000) AS i")
                keys = [(f"T{i % 3}", f"E{i}") for i in range(1, 20000, 97)]
                key_columns = ("tenant_id", "exception_id")
                arrays = tuple(list(column) for column in zip(*keys, strict=True))
                # Keys as arrays (a small batch), and as joined text: text compared with the
                # varchar key columns must still probe their index.
                for joined, parameters in ((frozenset(), arrays), (frozenset(key_columns), tuple("\x1f".join(a) for a in arrays))):
                    sql = bulk._select_sql(schema.exceptions, key_columns, tuple(schema.exceptions.c.keys()), (), joined)
                    plan = "\n".join(row[0] for row in (await connection.exec_driver_sql("EXPLAIN " + sql, parameters)).all())
                    assert "Index Scan using exceptions_pkey" in plan, plan
                    assert "Seq Scan on exceptions" not in plan and "Filter" not in plan, plan
                rows = await bulk.select_by_keys(connection, schema.exceptions, ("tenant_id", "exception_id"), keys)
                assert len(rows) == len(keys)
                # With fresh statistics, a batch's UPDATE probes the index with either form of keys.
                await connection.exec_driver_sql("ANALYZE exceptions")
                for joined, parameters in ((frozenset(), arrays), (frozenset(key_columns), tuple("\x1f".join(a) for a in arrays))):
                    sql = bulk._update_sql(schema.exceptions, key_columns, (), ("status",), joined)
                    plan = "\n".join(row[0] for row in (await connection.exec_driver_sql("EXPLAIN " + sql, (*parameters, "open"))).all())
                    assert "Index Scan using" in plan and "Seq Scan on exceptions" not in plan, plan
        finally:
            await engine.dispose()

    asyncio.run(scenario())


def test_queued_writes_go_in_one_statement_and_the_returning_one_answers(database: str) -> None:
    async def scenario() -> None:
        engine = create_engine(database, DatabaseSettings())
        table = schema.event_processing_log
        claim = bulk.do_update(table, (), ("status",), constraint="uq_event_processing_event_worker",
                               where="event_processing_log.status = 'retrying'")
        try:
            async with engine.begin() as connection:
                await bulk.insert_rows(connection, schema.exceptions, [_exception_row("W1", {}), _exception_row("W2", {})],
                                       conflict=bulk.do_nothing())
                await bulk.insert_rows(connection, table, [_processing_row("done", "completed", [])], conflict=bulk.do_nothing())
                writes = bulk.WriteBatch()
                writes.update_rows(schema.exceptions, ("tenant_id", "exception_id"), ("status",),
                                   [{"tenant_id": "FIN_ACME", "exception_id": "W1", "status": "resolved"}])
                # The write that returns rows need not be queued last.
                writes.insert_rows(table, [_processing_row("new", "completed", ["o1"]), _processing_row("done", "completed", [])],
                                   conflict=claim, returning=("event_id",))
                writes.insert_rows(schema.exceptions, [_exception_row("W2", {}), _exception_row("W3", {"k": "v"})],
                                   conflict=bulk.do_update(schema.exceptions, ("tenant_id", "exception_id"), ("status", "attributes")))
                with pytest.raises(ValueError):
                    writes.insert_rows(table, [_processing_row("other", "completed", [])], conflict=claim, returning=("event_id",))
                assert len(writes) == 3
                statements, forget = _remember_statements(connection)
                claimed = await writes.execute(connection)
                forget()
                # "done" was already completed: not claimed, so not returned.
                assert [row.event_id for row in claimed] == ["new"]
                assert len(statements) == 1 and statements[0][0].startswith("WITH w0 AS (UPDATE")
                assert len(writes) == 0 and await writes.execute(connection) == []
                rows = await bulk.select_by_keys(connection, schema.exceptions, ("tenant_id", "exception_id"),
                                                 [("FIN_ACME", "W1"), ("FIN_ACME", "W2"), ("FIN_ACME", "W3")],
                                                 order_by=("exception_id",))
                assert [(row.exception_id, row.status, row.attributes) for row in rows] == [
                    ("W1", "resolved", {}), ("W2", "open", {}), ("W3", "open", {"k": "v"})]
                outputs = await bulk.select_by_keys(connection, table, ("worker_type", "event_id"), [("triage", "new")],
                                                    columns=("output_event_ids",))
                assert [row.output_event_ids for row in outputs] == [["o1"]]
                await connection.rollback()
        finally:
            await engine.dispose()

    asyncio.run(scenario())


def test_a_failing_queued_write_fails_the_whole_statement(database: str) -> None:
    async def scenario() -> None:
        engine = create_engine(database, DatabaseSettings())
        try:
            async with engine.connect() as connection:
                writes = bulk.WriteBatch()
                writes.insert_rows(schema.exceptions, [_exception_row("F1", {})], conflict=bulk.do_nothing())
                writes.insert_rows(schema.event_processing_log, [{**_processing_row("bad", "completed", []), "status": None}],
                                   conflict=bulk.do_nothing())  # status is NOT NULL
                with pytest.raises(Exception, match="null value"):
                    await writes.execute(connection)
                await connection.rollback()
                found = await bulk.select_by_keys(connection, schema.exceptions, ("tenant_id", "exception_id"), [("FIN_ACME", "F1")])
                assert found == []
        finally:
            await engine.dispose()

    asyncio.run(scenario())


def test_bytes_floats_and_json_strings_come_back_as_sent(database: str) -> None:
    """Every byte value in a bytea column, NaN and infinities in a float column, a JSON string that
    looks like a JSON document (it stays a string), and JSON already encoded (it is not re-encoded)."""
    raw = bytes(range(256))

    async def scenario() -> None:
        engine = create_engine(database, DatabaseSettings())
        try:
            async with engine.begin() as connection:
                await bulk.insert_rows(connection, schema.dead_letter_queue, [{
                    "event_id": "raw-1", "worker_type": "intake", "error_type": "validation_error", "error_message": "bad",
                    "original_key": b"\x00key\xff", "original_value": raw, "original_headers": [["h", "v"]],
                    "payload": '{"looks": "like json"}',
                }], conflict=bulk.do_nothing())
                row = (await connection.exec_driver_sql(
                    "SELECT original_key, original_value, payload, jsonb_typeof(payload) AS kind "
                    "FROM dead_letter_queue WHERE event_id = 'raw-1'")).one()
                assert (bytes(row.original_key), bytes(row.original_value)) == (b"\x00key\xff", raw)
                assert (row.payload, row.kind) == ('{"looks": "like json"}', "string")
                # JSON a caller already encoded goes as it is.
                await bulk.insert_rows(connection, schema.dead_letter_queue, [{
                    "event_id": "raw-2", "worker_type": "intake", "error_type": "validation_error", "error_message": "bad",
                    "payload": bulk.EncodedJson('{"is": ["json"]}')}], conflict=bulk.do_nothing())
                row = (await connection.exec_driver_sql(
                    "SELECT payload, jsonb_typeof(payload) AS kind FROM dead_letter_queue WHERE event_id = 'raw-2'")).one()
                assert (row.payload, row.kind) == ({"is": ["json"]}, "object")

                rows = [{**_processing_row(f"f{index}", "completed", []), "duration_ms": value}
                        for index, value in enumerate([float("nan"), float("inf"), -0.25])]
                await bulk.insert_rows(connection, schema.event_processing_log, rows, conflict=bulk.do_nothing())
                durations = dict((await connection.exec_driver_sql(
                    "SELECT event_id, duration_ms FROM event_processing_log WHERE event_id LIKE 'f%'")).all())
                assert str(durations["f0"]) == "nan" and durations["f1"] == float("inf") and durations["f2"] == -0.25
                await connection.rollback()
        finally:
            await engine.dispose()

    asyncio.run(scenario())



def test_a_column_with_one_value_in_a_large_batch_goes_once_and_reads_back(database: str) -> None:
    """`BATCH_UNIFORM` columns holding one value in every row travel as one scalar parameter, of any
    column type; in a small batch, or where one row differs, as arrays. Either way the rows read back
    as written, through inserts, upserts and updates."""
    uniform = {schema.BATCH_UNIFORM: True}
    table = Table(
        "uniform_probe", MetaData(),
        Column("key", String(16), primary_key=True),
        Column("label", String(16), info=uniform),
        Column("tags", ARRAY(String(16)), info=uniform),
        Column("doc", JSONB, info=uniform),
        Column("blob", LargeBinary, info=uniform),
        Column("at", DateTime(timezone=True), info=uniform),
        Column("flag", Boolean, info=uniform),
        Column("amount", Float),
    )
    count = bulk.UNIFORM_MIN_ROWS

    def rows(common_label: str, last_row: dict[str, object] | None = None) -> list[dict[str, object]]:
        made = [{"key": f"k{index:02d}", "label": common_label, "tags": ['a "b"', "c,d"], "doc": {"n": [1, None]},
                 "blob": b"\x00\xff", "at": _NOW, "flag": True, "amount": index / 4} for index in range(count)]
        made[-1].update(last_row or {})
        return made

    async def scenario() -> None:
        engine = create_engine(database, DatabaseSettings())
        try:
            async with engine.connect() as connection:
                await connection.exec_driver_sql(
                    "CREATE TEMP TABLE uniform_probe (key varchar(16) PRIMARY KEY, label varchar(16), tags varchar(16)[], "
                    "doc jsonb, blob bytea, at timestamptz, flag boolean, amount float)")
                statements, forget = _remember_statements(connection)

                async def read() -> list[tuple[object, ...]]:
                    result = await connection.exec_driver_sql(
                        "SELECT key, label, tags, doc, blob, at, flag, amount FROM uniform_probe ORDER BY key")
                    return [(r.key, r.label, r.tags, r.doc, bytes(r.blob), r.at, r.flag, r.amount) for r in result.all()]

                def expected(made: list[dict[str, object]]) -> list[tuple[object, ...]]:
                    return [(r["key"], r["label"], r["tags"], r["doc"], r["blob"], r["at"], r["flag"], r["amount"]) for r in made]

                upsert = bulk.do_update(table, ("key",), ("label", "tags", "doc", "blob", "at", "flag", "amount"))
                first = rows("same")
                await bulk.insert_rows(connection, table, first, conflict=upsert)
                sql, parameters = statements[-1]
                # key and amount vary: key as joined text, amount as an array; the six uniform
                # columns: one value each (tags' scalar is cast to an array).
                assert [type(parameter) for parameter in parameters[:2]] == [str, list] and len(parameters) == 8, sql
                assert sql.count("string_to_array") == 1 and sql.count("[]") == 2, sql
                assert await read() == expected(first)

                # One row differs in every uniform column: everything goes as arrays (the text ones
                # as joined text, see the next test).
                second = rows("same", {"label": None, "tags": [], "doc": {"n": 2}, "blob": b"", "at": None, "flag": False})
                await bulk.insert_rows(connection, table, second, conflict=upsert)
                assert [type(parameter) for parameter in statements[-1][1]] == [str] * 4 + [list] * 4
                assert await read() == expected(second)

                # An update setting uniform NULLs, and a small batch (arrays only).
                await bulk.update_rows(connection, table, ("key",), ("label", "flag"),
                                       [{"key": r["key"], "label": None, "flag": None} for r in first])
                assert [type(parameter) for parameter in statements[-1][1]] == [str, type(None), type(None)]
                small = rows("small")[:3]
                await bulk.insert_rows(connection, table, small, conflict=upsert)
                assert [type(parameter) for parameter in statements[-1][1]] == [list] * 8
                assert [(row[0], row[1], row[6]) for row in await read()] == (
                    [(f"k{index:02d}", "small", True) for index in range(3)]
                    + [(f"k{index:02d}", None, None) for index in range(3, count)])

                # Rows whose every column is uniform still insert one row each (one goes as an array).
                await connection.exec_driver_sql("CREATE TEMP TABLE uniform_only (label varchar(16), flag boolean)")
                only_uniform = Table("uniform_only", MetaData(), Column("label", String(16), info=uniform),
                                     Column("flag", Boolean, info=uniform))
                await bulk.insert_rows(connection, only_uniform, [{"label": "same", "flag": False}] * count,
                                       conflict=bulk.do_nothing())
                assert [type(parameter) for parameter in statements[-1][1]] == [str, bool]
                assert (await connection.exec_driver_sql(
                    "SELECT count(*) FROM uniform_only WHERE label = 'same' AND NOT flag")).scalar_one() == count
                forget()
                await connection.rollback()
        finally:
            await engine.dispose()

    asyncio.run(scenario())


def test_text_columns_of_a_large_batch_travel_joined_and_read_back_exactly(database: str) -> None:
    """In a batch of `UNIFORM_MIN_ROWS` rows or more, a text column (string, array literal, JSON)
    goes as one text split by `string_to_array`. NULLs, empty strings and awkward text read back as
    written; a column where a value holds the separator or the NULL mark goes as an array; key
    lookups take the same path."""
    table = Table(
        "joined_probe", MetaData(),
        Column("key", String(16), primary_key=True),
        Column("label", String(32)),
        Column("tags", ARRAY(String(16))),
        Column("doc", JSONB),
        Column("amount", Float),
    )
    count = bulk.UNIFORM_MIN_ROWS + 4
    awkward = ["", None, "NULL", 'with "quotes"', "back\\slash", "comma,brace}{", " spaced ", "é☃", "tab\tnew\nline"]

    def rows(labels: list[str | None]) -> list[dict[str, object]]:
        return [{"key": f"k{index:02d}", "label": labels[index % len(labels)],
                 "tags": None if index == 1 else ["", "x\x1fy"] if index == 2 else [f"t{index}", 'a "b"'],
                 "doc": None if index == 3 else {"text": "unit\x1fsep record\x1esep", "n": [index, None]},
                 "amount": index / 4} for index in range(count)]

    async def scenario() -> None:
        engine = create_engine(database, DatabaseSettings())
        try:
            async with engine.connect() as connection:
                await connection.exec_driver_sql(
                    "CREATE TEMP TABLE joined_probe (key varchar(16) PRIMARY KEY, label varchar(32), tags varchar(16)[], "
                    "doc jsonb, amount float)")
                statements, forget = _remember_statements(connection)

                async def read() -> list[dict[str, object]]:
                    result = await connection.exec_driver_sql("SELECT key, label, tags, doc, amount FROM joined_probe ORDER BY key")
                    return [dict(row._mapping) for row in result.all()]

                written = rows(awkward)
                await bulk.insert_rows(connection, table, written, conflict=bulk.do_nothing())
                sql, parameters = statements[-1]
                # key, label, doc: joined; tags: an array, a value holds the separator; amount: not text.
                assert [type(parameter) for parameter in parameters] == [str, str, list, str, list], sql
                assert sql.count("string_to_array") == 3
                assert await read() == written

                # A value holding the NULL mark sends its column as an array; the rest stay joined.
                relabelled = [{"key": row["key"], "label": "mark\x1e" if row["key"] == "k05" else f"L{row['key']}"}
                              for row in written]
                await bulk.update_rows(connection, table, ("key",), ("label",), relabelled)
                assert [type(parameter) for parameter in statements[-1][1]] == [str, list]
                assert [(row["key"], row["label"]) for row in await read()] == [(r["key"], r["label"]) for r in relabelled]

                found = await bulk.select_by_keys(connection, table, ("key",), [(f"k{index:02d}",) for index in range(count)]
                                                  + [("absent",), ("sep\x1fkey",)], columns=("key",))
                assert type(statements[-1][1][0]) is list  # a key holds the separator
                assert sorted(row.key for row in found) == [row["key"] for row in written]
                found = await bulk.select_by_keys(connection, table, ("key",), [(row["key"],) for row in written],
                                                  columns=("key", "doc"))
                assert type(statements[-1][1][0]) is str
                assert {row.key: row.doc for row in found} == {row["key"]: row["doc"] for row in written}

                # A native enum takes no text without a cast: its column goes as an array.
                await connection.exec_driver_sql("CREATE TYPE probe_mood AS ENUM ('calm', 'busy')")
                await connection.exec_driver_sql("CREATE TEMP TABLE enum_probe (key varchar(16) PRIMARY KEY, mood probe_mood)")
                moods = Table("enum_probe", MetaData(), Column("key", String(16), primary_key=True),
                              Column("mood", Enum("calm", "busy", name="probe_mood")))
                await bulk.insert_rows(connection, moods, [{"key": f"m{index:02d}", "mood": "calm" if index % 2 else "busy"}
                                                           for index in range(count)], conflict=bulk.do_nothing())
                assert [type(parameter) for parameter in statements[-1][1]] == [str, list]
                assert (await connection.exec_driver_sql("SELECT count(*) FROM enum_probe WHERE mood = 'calm'")).scalar_one() == count // 2
                forget()
                await connection.rollback()
        finally:
            await engine.dispose()

    asyncio.run(scenario())
