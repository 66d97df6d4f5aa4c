"""Batch reads and writes as one constant SQL statement per batch (PostgreSQL arrays and `unnest`).

A batch of 500 events used to cost 500 executions of each INSERT and UPDATE, and lookups by key as
a 500-arm `IN` list whose SQL text changed with every batch size. Here every statement takes one
array per column instead, so:

- its text never changes: asyncpg prepares it once per connection and PostgreSQL plans it once;
- it runs once per batch, whatever the batch size (one round trip, one parameter set);
- a lookup by key is one index probe per key, whatever the planner's estimates (a 500-arm `IN`
  list, or a plain join, is planned as a scan of the whole table).

The SQL is built from the `schema` tables once per (table, columns) and cached. Values go to
asyncpg as they are, except JSON columns (encoded here with pydantic_core; `None` is SQL NULL) and
array columns, which cannot be unnested as 2-D arrays: each travels as the text of an array literal
and is cast back in SQL (a cast per row, where rebuilding it from JSON took a subquery per row).
Statements run through `exec_driver_sql`, so they join the caller's transaction.

A column the schema marks `BATCH_UNIFORM` (a status, a timestamp of the batch, a column still NULL)
usually holds one value in every row of a batch. When it does, in a batch of `UNIFORM_MIN_ROWS` or
more, it goes once as a scalar parameter instead of as an array: asyncpg checks every array element
against `collections.abc` types in Python before it encodes it (with the checks, its execution was a
fifth of the stage code's CPU), and these columns were about a third of the elements.
Which columns went as scalars is part of the statement's text, so a table has a few statements, not one.

For the same reason, a text column (ids, names, JSON, array literals) of such a batch goes as one
text parameter: its values joined by a control character (U+001F; U+001E stands for NULL), split
back by `string_to_array` in SQL. Joining is one C call where an array cost two `collections.abc`
checks per element. A column where a value holds either character (JSON text never does: it
escapes control characters) goes as an array as before.

A batch's writes need no answer until the last one (the processing log, whose `RETURNING` proves
this worker claimed its events). `WriteBatch` queues them and sends them together as one statement,
each as a data-modifying `WITH` clause: one round trip where a batch took five to eight (the
statement overhead, on both sides, was a third of a small batch's cost). One statement is atomic by
itself, so a batch sends it without BEGIN and COMMIT; `execute(require_returned=N)` makes it fail as
a whole when its claim on the batch's events comes up short.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import pydantic_core
from sqlalchemy import ARRAY, JSON, Enum, LargeBinary, Row, String, Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from pipeline.storage.schema import BATCH_UNIFORM

_DIALECT = postgresql.dialect()


class EncodedJson(str):
    """A JSON column's value already encoded (by a caller that needed the JSON for something else):
    sent as it is. A plain `str` is a JSON string value, and is encoded as one."""

    __slots__ = ()


def json_text(value: Any) -> str | None:
    """A JSON column's value as text for asyncpg (None is SQL NULL, not JSON null)."""
    if value is None:
        return None
    if type(value) is EncodedJson:
        return value
    return pydantic_core.to_json(value).decode()


def array_literal(values: Sequence[Any] | None) -> str | None:
    """An array column's value as the text of a PostgreSQL array literal (None is SQL NULL)."""
    if values is None:
        return None
    items = ("NULL" if value is None else '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"' for value in values)
    return "{" + ",".join(items) + "}"


def _array_type(table: Table, name: str) -> str:
    column_type = table.c[name].type
    if isinstance(column_type, ARRAY):
        return "text[]"
    if isinstance(column_type, JSON):
        return "jsonb[]"
    if isinstance(column_type, LargeBinary):
        return "bytea[]"
    return f"{column_type.compile(dialect=_DIALECT)}[]"


def _value_expression(table: Table, name: str) -> str:
    """How a column's value is read from the unnested row `v`."""
    column_type = table.c[name].type
    if isinstance(column_type, ARRAY):
        return f"v.{_quote(name)}::{column_type.item_type.compile(dialect=_DIALECT)}[]"
    return f"v.{_quote(name)}"


def _encoder(table: Table, name: str) -> Any:
    column_type = table.c[name].type
    if isinstance(column_type, ARRAY):
        return array_literal
    if isinstance(column_type, JSON):
        return json_text
    return None


def _quote(name: str) -> str:
    return _DIALECT.identifier_preparer.quote(name)


def _scalar_expression(table: Table, name: str, parameter: int) -> str:
    """How a column's value is read from the scalar parameter `$parameter` (a uniform column)."""
    column_type = table.c[name].type
    if isinstance(column_type, ARRAY):
        return f"${parameter}::text::{column_type.item_type.compile(dialect=_DIALECT)}[]"
    if isinstance(column_type, JSON):
        return f"${parameter}::jsonb"
    if isinstance(column_type, LargeBinary):
        return f"${parameter}::bytea"
    return f"${parameter}::{column_type.compile(dialect=_DIALECT)}"


def _unnest(table: Table, columns: Sequence[str], first_parameter: int = 1, joined: frozenset[str] = frozenset()) -> str:
    """`unnest` of one parameter per column: an array, or for a `joined` column the values' text."""
    arrays = ", ".join(
        _joined_expression(table, name, first_parameter + index) if name in joined
        else f"${first_parameter + index}::{_array_type(table, name)}"
        for index, name in enumerate(columns)
    )
    names = ", ".join(_quote(name) for name in columns)
    return f"unnest({arrays}) AS v({names})"


_SEPARATOR, _NULL = "\x1f", "\x1e"  # ASCII unit and record separators
_SEPARATOR_SQL, _NULL_SQL = "E'\\x1f'", "E'\\x1e'"


def _joined_expression(table: Table, name: str, parameter: int) -> str:
    """The array a joined column's text `$parameter` splits into. A string column stays `text[]`:
    PostgreSQL checks a value's length as it stores it, and compares text with varchar keys as
    text anyway, so a cast to `varchar(n)[]` would only copy every element once more."""
    split = f"string_to_array(${parameter}::text, {_SEPARATOR_SQL}, {_NULL_SQL})"
    return f"{split}::jsonb[]" if isinstance(table.c[name].type, JSON) else split


def _joinable(table: Table, name: str) -> bool:
    """A column whose values (as sent) are text: it may travel as one joined text parameter. Not an
    `Enum`: a native enum type takes no `text` without a cast, and `_joined_expression` casts none."""
    column_type = table.c[name].type
    return isinstance(column_type, (String, ARRAY, JSON)) and not isinstance(column_type, Enum)


def _joined_text(values: list[Any]) -> str | None:
    """`values` (text or None) as one text for `string_to_array(text, separator, null)`, or None
    when they cannot be: a value that is not text, or that holds the separator or the NULL mark."""
    nulls = values.count(None)
    texts = [_NULL if value is None else value for value in values] if nulls else values
    try:
        joined = _SEPARATOR.join(texts)
    except TypeError:
        return None
    if joined.count(_SEPARATOR) != len(values) - 1 or joined.count(_NULL) != nulls:
        return None
    return joined


UNIFORM_MIN_ROWS = 16
"""Below this many rows every column goes as an array, none as a scalar or as joined text: in a
small batch, columns that vary would often hold one value by chance, and each such combination is
one more statement to prepare. (Joined text also needs two rows or more: one empty string and no
row at all are the same empty text.)"""


def _columns_and_parameters(
    table: Table, columns: Sequence[str], rows: Sequence[Mapping[str, Any]], *, arrays_at_least: int = 0,
) -> tuple[tuple[str, ...], tuple[str, ...], frozenset[str], tuple[Any, ...]]:
    """Split `columns` into those sent as arrays and the `BATCH_UNIFORM` ones whose value is the same
    in every row (none in a small batch), sent once. Answers (array columns, scalar columns, the array
    columns sent as joined text, parameters: one per array column, then one value per scalar column).
    The first `arrays_at_least` columns always go as arrays (keys to match, or one to give `unnest`
    its rows)."""
    values = {name: [row[name] for row in rows] for name in columns}
    large = len(rows) >= UNIFORM_MIN_ROWS
    scalars: list[str] = []
    if large:
        for index, name in enumerate(columns):
            column = values[name]
            # `count` compares in C, by identity first. Values that compare equal (1 and 1.0, one
            # instant in two time zones) are one value to PostgreSQL's column type too.
            if index >= arrays_at_least and table.c[name].info.get(BATCH_UNIFORM) and column.count(column[0]) == len(column):
                scalars.append(name)
    arrays = tuple(name for name in columns if name not in scalars)
    parameters, joined = _array_parameters(table, arrays, values, join=large)
    for name in scalars:
        encode = _encoder(table, name)
        parameters.append(encode(values[name][0]) if encode else values[name][0])
    return arrays, tuple(scalars), joined, tuple(parameters)


def _array_parameters(
    table: Table, columns: Sequence[str], values: Mapping[str, list[Any]], *, join: bool,
) -> tuple[list[Any], frozenset[str]]:
    """One parameter per column: its encoded values, as one joined text where `join` allows and the
    column is text (see `_joined_text`), else as a list. Answers them and the joined columns."""
    parameters: list[Any] = []
    joined: list[str] = []
    for name in columns:
        encode = _encoder(table, name)
        column = [encode(value) for value in values[name]] if encode else values[name]
        text = _joined_text(column) if join and _joinable(table, name) else None
        if text is None:
            parameters.append(column)
        else:
            parameters.append(text)
            joined.append(name)
    return parameters, frozenset(joined)


@lru_cache(maxsize=256)
def _insert_sql(
    table: Table, columns: tuple[str, ...], conflict: str, returning: tuple[str, ...], scalars: tuple[str, ...] = (),
    joined: frozenset[str] = frozenset(),
) -> str:
    """`columns` come from arrays (unnested; the `joined` ones from text), then `scalars` from one
    parameter each."""
    names = ", ".join(_quote(name) for name in columns + scalars)
    values = ", ".join([_value_expression(table, name) for name in columns]
                       + [_scalar_expression(table, name, len(columns) + 1 + index) for index, name in enumerate(scalars)])
    sql = f"INSERT INTO {_quote(table.name)} ({names}) SELECT {values} FROM {_unnest(table, columns, joined=joined)} {conflict}"
    if returning:
        sql += " RETURNING " + ", ".join(_quote(name) for name in returning)
    return sql


def do_nothing() -> str:
    """`ON CONFLICT DO NOTHING`: an idempotent insert."""
    return "ON CONFLICT DO NOTHING"


@lru_cache(maxsize=256)
def do_update(table: Table, conflict_columns: tuple[str, ...], columns: tuple[str, ...], *,
              constraint: str | None = None, where: str | None = None, increment: bool = False) -> str:
    """`ON CONFLICT ... DO UPDATE` that sets `columns` from the new row (or adds them, `increment`)."""
    target = f"ON CONSTRAINT {_quote(constraint)}" if constraint else "(" + ", ".join(map(_quote, conflict_columns)) + ")"
    table_name = _quote(table.name)
    if increment:
        assignments = ", ".join(f"{_quote(c)} = {table_name}.{_quote(c)} + EXCLUDED.{_quote(c)}" for c in columns)
    else:
        assignments = ", ".join(f"{_quote(c)} = EXCLUDED.{_quote(c)}" for c in columns)
    clause = f"ON CONFLICT {target} DO UPDATE SET {assignments}"
    return f"{clause} WHERE {where}" if where else clause


async def insert_rows(
    connection: AsyncConnection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    conflict: str,
    returning: Sequence[str] = (),
    columns: Sequence[str] | None = None,
) -> list[Row[Any]]:
    """Insert `rows` (every row has the same keys, or give `columns`) in one statement.

    `conflict` is `do_nothing()` or `do_update(...)`; `returning` names columns to return for the
    rows actually inserted or updated."""
    writes = WriteBatch()
    writes.insert_rows(table, rows, conflict=conflict, returning=returning, columns=columns)
    return await writes.execute(connection)


@lru_cache(maxsize=256)
def _update_sql(
    table: Table, key_columns: tuple[str, ...], columns: tuple[str, ...], scalars: tuple[str, ...] = (),
    joined: frozenset[str] = frozenset(),
) -> str:
    """`columns` come from arrays (unnested with the keys; the `joined` ones from text), then
    `scalars` from one parameter each."""
    first_scalar = len(key_columns) + len(columns) + 1
    assignments = ", ".join([f"{_quote(name)} = {_value_expression(table, name)}" for name in columns]
                            + [f"{_quote(name)} = {_scalar_expression(table, name, first_scalar + index)}"
                               for index, name in enumerate(scalars)])
    match = " AND ".join(f"t.{_quote(name)} = v.{_quote(name)}" for name in key_columns)
    return (f"UPDATE {_quote(table.name)} AS t SET {assignments} "
            f"FROM {_unnest(table, key_columns + columns, joined=joined)} WHERE {match}")


async def update_rows(
    connection: AsyncConnection, table: Table, key_columns: Sequence[str], columns: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
) -> None:
    """Set `columns` of the rows matched by `key_columns`, one statement for all `rows`. Keys must
    be distinct (PostgreSQL applies only one update per target row)."""
    writes = WriteBatch()
    writes.update_rows(table, key_columns, columns, rows)
    await writes.execute(connection)


class WriteBatch:
    """Writes queued during a transaction and sent as one statement by `execute`.

    PostgreSQL runs every data-modifying `WITH` clause of a statement to completion, in the
    statement's one snapshot, whether or not the statement refers to it. So the queued writes must
    not depend on each other's effects, and no two may touch the same row (PostgreSQL would apply
    only one). A batch queues one write per table and kind of change, for disjoint keys, which
    satisfies both. At most one write may ask for `returning`: it becomes the main statement, and
    `execute` answers its rows.
    """

    def __init__(self) -> None:
        self._statements: list[tuple[str, tuple[list[Any], ...]]] = []
        self._main: int | None = None

    def __len__(self) -> int:
        return len(self._statements)

    def insert_rows(
        self,
        table: Table,
        rows: Sequence[Mapping[str, Any]],
        *,
        conflict: str,
        returning: Sequence[str] = (),
        columns: Sequence[str] | None = None,
    ) -> None:
        """Queue `insert_rows`; see there."""
        if not rows:
            return
        if returning:
            if self._main is not None:
                raise ValueError("only one queued write can return rows")
            self._main = len(self._statements)
        names = tuple(columns if columns is not None else rows[0].keys())
        # The first column always goes as an array: unnest gives the statement its rows.
        arrays, scalars, joined, parameters = _columns_and_parameters(table, names, rows, arrays_at_least=1)
        self._statements.append((_insert_sql(table, arrays, conflict, tuple(returning), scalars, joined), parameters))

    def update_rows(
        self, table: Table, key_columns: Sequence[str], columns: Sequence[str], rows: Sequence[Mapping[str, Any]],
    ) -> None:
        """Queue `update_rows`; see there."""
        if not rows:
            return
        keys, names = tuple(key_columns), tuple(columns)
        arrays, scalars, joined, parameters = _columns_and_parameters(table, keys + names, rows, arrays_at_least=len(keys))
        self._statements.append((_update_sql(table, keys, arrays[len(keys):], scalars, joined), parameters))

    async def execute(self, connection: AsyncConnection, *, require_returned: int | None = None) -> list[Row[Any]]:
        """Run every queued write in one statement, then forget them. Answers the rows returned by
        the write that asked for `returning` (none if no write did).

        With `require_returned`, the statement fails as a whole unless that write returned exactly
        so many rows: PostgreSQL raises SQLSTATE `REQUIRED_ROWS_MISSING` inside it (migration 0008),
        so nothing of it stays, even on a connection in autocommit mode. It then answers no rows."""
        statements, main = self._statements, self._main
        self._statements, self._main = [], None
        if not statements:
            return []
        if require_returned is not None:
            if main is None:
                raise ValueError("require_returned needs a queued write with returning")
            sql = _checked_sql(tuple(text for text, _ in statements), tuple(len(p) for _, p in statements), main)
            parameters = (*(array for _, arrays in statements for array in arrays), require_returned)
            await connection.exec_driver_sql(sql, parameters)
            return []
        if len(statements) == 1:
            sql, parameters = statements[0]
        else:
            sql = _combined_sql(tuple(text for text, _ in statements), tuple(len(p) for _, p in statements),
                                len(statements) - 1 if main is None else main)
            parameters = tuple(array for _, arrays in statements for array in arrays)
        result = await connection.exec_driver_sql(sql, parameters)
        return list(result.all()) if main is not None else []


_PARAMETER = re.compile(r"\$(\d+)")

REQUIRED_ROWS_MISSING = "40S01"
"""SQLSTATE of `sentinai_require_rows` (migration 0008): a write returned fewer rows than required.
Class 40 (transaction rollback): the statement left nothing, and running it again may succeed."""


def _renumbered(statements: tuple[str, ...], parameter_counts: tuple[int, ...]) -> list[str]:
    """`statements` with their parameters numbered on from one another's, in order."""
    renumbered, offset = [], 0
    for sql, count in zip(statements, parameter_counts, strict=True):
        renumbered.append(_PARAMETER.sub(lambda match, shift=offset: f"${int(match.group(1)) + shift}", sql))
        offset += count
    return renumbered


@lru_cache(maxsize=512)
def _combined_sql(statements: tuple[str, ...], parameter_counts: tuple[int, ...], main: int) -> str:
    """`WITH w0 AS (...), w1 AS (...) <main>`, parameters numbered in the order of `statements`."""
    renumbered = _renumbered(statements, parameter_counts)
    clauses = ", ".join(f"w{index} AS ({sql})" for index, sql in enumerate(renumbered) if index != main)
    return f"WITH {clauses} {renumbered[main]}"


@lru_cache(maxsize=512)
def _checked_sql(statements: tuple[str, ...], parameter_counts: tuple[int, ...], main: int) -> str:
    """Every statement as a `WITH` clause, then the check that `main` returned as many rows as the
    last parameter says (`sentinai_require_rows`, which raises `REQUIRED_ROWS_MISSING`)."""
    renumbered = _renumbered(statements, parameter_counts)
    clauses = ", ".join(f"w{index} AS ({sql})" for index, sql in enumerate(renumbered))
    return f"WITH {clauses} SELECT sentinai_require_rows((SELECT count(*) FROM w{main}), ${sum(parameter_counts) + 1}::bigint)"


@lru_cache(maxsize=256)
def _select_sql(
    table: Table, key_columns: tuple[str, ...], columns: tuple[str, ...], order_by: tuple[str, ...],
    joined: frozenset[str] = frozenset(),
) -> str:
    # A LATERAL subquery that the planner cannot flatten (OFFSET 0): one index probe per key,
    # always. As a plain join, PostgreSQL hashes the whole table once a batch has a few hundred keys.
    selected = ", ".join(f"t.{_quote(name)}" for name in columns)
    match = " AND ".join(f"t.{_quote(name)} = v.{_quote(name)}" for name in key_columns)
    sql = (f"SELECT {selected} FROM {_unnest(table, key_columns, joined=joined)} "
           f"CROSS JOIN LATERAL (SELECT * FROM {_quote(table.name)} AS t WHERE {match} OFFSET 0) AS t")
    if order_by:
        sql += " ORDER BY " + ", ".join(f"t.{_quote(name)}" for name in order_by)
    return sql


async def select_by_keys(
    connection: AsyncConnection,
    table: Table,
    key_columns: Sequence[str],
    keys: Iterable[tuple[Any, ...]],
    *,
    columns: Sequence[str] | None = None,
    order_by: Sequence[str] = (),
) -> list[Row[Any]]:
    """Rows of `table` whose `key_columns` equal one of `keys` (distinct tuples), in one statement."""
    distinct = list(dict.fromkeys(keys))
    if not distinct:
        return []
    names = tuple(columns) if columns is not None else tuple(table.c.keys())
    keys_by_column = dict(zip(key_columns, (list(values) for values in zip(*distinct, strict=True)), strict=True))
    parameters, joined = _array_parameters(table, tuple(key_columns), keys_by_column, join=len(distinct) >= UNIFORM_MIN_ROWS)
    sql = _select_sql(table, tuple(key_columns), names, tuple(order_by), joined)
    return list((await connection.exec_driver_sql(sql, tuple(parameters))).all())
