"""What a stage is: batched loads, per-event logic over in-memory state, batched writes.

A stage never commits per event. The batch processor (`pipeline.processing`) opens one transaction
per batch, calls `load` once, `handle` for each new event in order, then `flush` once, which queues
the batch's writes for the processor to send in one statement with its own. `handle`
works on the in-memory `BatchState` (so a later event of the same exception in the same batch sees
an earlier one's changes) and returns the events to emit; it raises a `ValidationError` for an event
that can never succeed (dead-lettered) or a `TransientError` to retry it later.

`prepare` runs before the transaction, for slow I/O (HTTP tools) that must not hold a connection.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from pipeline.errors import UnexpectedEventError
from pipeline.events import EventEnvelope, EventType
from pipeline.packs import PackRegistry
from pipeline.settings import Settings
from pipeline.storage import bulk, schema

ExceptionKey = tuple[str, str]


@dataclass(frozen=True)
class Emission:
    """An event a stage wants to emit; the processor gives it a deterministic id."""

    event_type: EventType
    payload: dict[str, Any]


@dataclass
class _EventUndo:
    insert_counts: dict[str, int]
    exceptions: dict[ExceptionKey, tuple[dict[str, Any] | None, bool, set[str]]] = field(default_factory=dict)
    playbook_runs: dict[ExceptionKey, tuple[dict[str, Any] | None, bool]] = field(default_factory=dict)


def _restore(rows: dict[ExceptionKey, dict[str, Any]], key: ExceptionKey, row: dict[str, Any] | None) -> None:
    if row is None:
        rows.pop(key, None)
    else:
        rows[key] = row


@dataclass
class BatchState:
    """Rows loaded for one batch, and the writes it will flush in one transaction."""

    now: datetime
    exceptions: dict[ExceptionKey, dict[str, Any]] = field(default_factory=dict)
    playbook_runs: dict[ExceptionKey, dict[str, Any]] = field(default_factory=dict)
    prepared: dict[str, Any] = field(default_factory=dict)  # results of `Stage.prepare`, by event id
    _new_exceptions: set[ExceptionKey] = field(default_factory=set)
    _dirty_exception_columns: dict[ExceptionKey, set[str]] = field(default_factory=lambda: defaultdict(set))
    _dirty_playbook_runs: set[ExceptionKey] = field(default_factory=set)
    _inserts: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    _undo: _EventUndo | None = None

    def begin_event(self) -> None:
        """Start recording what the next event changes, so `rollback_event` can take it back."""
        self._undo = _EventUndo(insert_counts={name: len(rows) for name, rows in self._inserts.items()})

    def end_event(self) -> None:
        self._undo = None

    def rollback_event(self) -> None:
        """Forget every change since `begin_event`: an event that fails (dead-lettered, or retried)
        leaves no partial effect in the batch."""
        undo, self._undo = self._undo, None
        if undo is None:
            return
        for key, (row, was_new, dirty) in undo.exceptions.items():
            _restore(self.exceptions, key, row)
            (self._new_exceptions.add if was_new else self._new_exceptions.discard)(key)
            self._dirty_exception_columns[key] = dirty
        for key, (row, was_dirty) in undo.playbook_runs.items():
            _restore(self.playbook_runs, key, row)
            (self._dirty_playbook_runs.add if was_dirty else self._dirty_playbook_runs.discard)(key)
        for name in list(self._inserts):
            del self._inserts[name][undo.insert_counts.get(name, 0):]

    def _remember_exception(self, key: ExceptionKey) -> None:
        if self._undo is not None and key not in self._undo.exceptions:
            row = self.exceptions.get(key)
            self._undo.exceptions[key] = (dict(row) if row is not None else None, key in self._new_exceptions,
                                          set(self._dirty_exception_columns.get(key, set())))

    def _remember_run(self, key: ExceptionKey) -> None:
        if self._undo is not None and key not in self._undo.playbook_runs:
            row = self.playbook_runs.get(key)
            self._undo.playbook_runs[key] = (dict(row) if row is not None else None, key in self._dirty_playbook_runs)

    def exception(self, event: EventEnvelope) -> dict[str, Any] | None:
        return self.exceptions.get((event.tenant_id, event.exception_id))

    def put_exception(self, key: ExceptionKey, row: dict[str, Any]) -> None:
        """Insert or fully replace an exception (intake)."""
        self._remember_exception(key)
        self.exceptions[key] = row
        self._new_exceptions.add(key)

    def update_exception(self, key: ExceptionKey, **columns: Any) -> None:
        self._remember_exception(key)
        row = self.exceptions[key]
        row.update(columns)
        if key not in self._new_exceptions:
            self._dirty_exception_columns[key].update(columns)

    def put_playbook_run(self, key: ExceptionKey, row: dict[str, Any]) -> None:
        self._remember_run(key)
        self.playbook_runs[key] = row
        self._dirty_playbook_runs.add(key)

    def insert(self, table: Table, row: dict[str, Any]) -> None:
        """Queue an idempotent insert (ON CONFLICT DO NOTHING)."""
        self._inserts[table.name].append(row)

    def flush(self, writes: bulk.WriteBatch) -> None:
        """Queue the batch's changes: one write per table and kind of change, for disjoint rows."""
        self._flush_new_exceptions(writes)
        self._flush_exception_updates(writes)
        self._flush_playbook_runs(writes)
        for table_name, rows in self._inserts.items():
            writes.insert_rows(schema.metadata.tables[table_name], rows, conflict=bulk.do_nothing())

    def _flush_new_exceptions(self, writes: bulk.WriteBatch) -> None:
        if not self._new_exceptions:
            return
        rows = [{**self.exceptions[key], "updated_at": self.now} for key in sorted(self._new_exceptions)]
        columns = _all_columns(rows)
        keep = {"tenant_id", "exception_id", "created_at"}
        conflict = bulk.do_update(schema.exceptions, ("tenant_id", "exception_id"), tuple(c for c in columns if c not in keep))
        writes.insert_rows(schema.exceptions, rows, conflict=conflict, columns=columns)

    def _flush_exception_updates(self, writes: bulk.WriteBatch) -> None:
        # An exception new in this batch is written whole by `_flush_new_exceptions`, never here, and
        # each updated exception falls in exactly one group: the writes touch disjoint rows.
        by_columns: dict[frozenset[str], list[ExceptionKey]] = defaultdict(list)
        for key, columns in self._dirty_exception_columns.items():
            if columns:
                by_columns[frozenset(columns)].append(key)
        for columns, keys in sorted(by_columns.items(), key=lambda item: sorted(item[0])):
            changed = sorted(columns - {"updated_at"})
            ordered = (*changed, "updated_at")
            rows = []
            for key in sorted(keys):
                row = self.exceptions[key]
                # Only the columns written: copying the whole row (description, attributes, ...) per
                # exception was a tenth of the triage pool's CPU.
                update = {column: row[column] for column in changed}
                update.update(tenant_id=key[0], exception_id=key[1], updated_at=self.now)
                rows.append(update)
            writes.update_rows(schema.exceptions, ("tenant_id", "exception_id"), ordered, rows)

    def _flush_playbook_runs(self, writes: bulk.WriteBatch) -> None:
        if not self._dirty_playbook_runs:
            return
        rows = [{**self.playbook_runs[key], "updated_at": self.now} for key in sorted(self._dirty_playbook_runs)]
        keep = {"tenant_id", "exception_id", "started_at"}
        columns = _all_columns(rows)
        conflict = bulk.do_update(schema.playbook_runs, ("tenant_id", "exception_id"), tuple(c for c in columns if c not in keep))
        writes.insert_rows(schema.playbook_runs, rows, conflict=conflict, columns=columns)


# `select_by_keys` returns every column in table order; zipping with these is much cheaper than
# `Row._mapping`, which builds a key view per row.
_EXCEPTION_COLUMNS = tuple(schema.exceptions.c.keys())
_PLAYBOOK_RUN_COLUMNS = tuple(schema.playbook_runs.c.keys())


def _all_columns(rows: list[dict[str, Any]]) -> tuple[str, ...]:
    """Every column any row sets; rows that leave one out get NULL (`bulk` needs one column list)."""
    columns = tuple(sorted({column for row in rows for column in row}))
    for row in rows:
        for column in columns:
            row.setdefault(column, None)
    return columns


async def load_exceptions(
    connection: AsyncConnection, keys: set[ExceptionKey], columns: Sequence[str] | None = None,
) -> dict[ExceptionKey, dict[str, Any]]:
    """The exception rows of `keys`: every column, or the keys and `columns`."""
    names = _EXCEPTION_COLUMNS if columns is None else ("tenant_id", "exception_id", *columns)
    rows = await bulk.select_by_keys(connection, schema.exceptions, ("tenant_id", "exception_id"), sorted(keys), columns=names)
    return {(row[0], row[1]): dict(zip(names, row, strict=True)) for row in rows}


async def load_playbook_runs(connection: AsyncConnection, keys: set[ExceptionKey]) -> dict[ExceptionKey, dict[str, Any]]:
    rows = await bulk.select_by_keys(connection, schema.playbook_runs, ("tenant_id", "exception_id"), sorted(keys))
    return {(row.tenant_id, row.exception_id): dict(zip(_PLAYBOOK_RUN_COLUMNS, row, strict=True)) for row in rows}


class Stage(ABC):
    """A pipeline stage's business logic. Subclasses set `name` and `accepts`."""

    name: ClassVar[str]
    accepts: ClassVar[frozenset[EventType]]
    # True when `prepare` does slow I/O (HTTP, a remote model): the processor then runs it before
    # the batch's transaction, after looking up finished events in a short transaction of its own,
    # so nothing is prepared twice and no transaction waits on I/O. False: `prepare` runs inside the
    # batch's transaction, after that lookup, which saves the short transaction's round trips.
    slow_prepare: bool = False
    # The exception columns `handle` reads, besides the keys (None: all of them). The description and
    # the attributes are the widest: fetching and decoding them for a stage that never reads them
    # cost PostgreSQL and the pool more than anything else in `load`.
    exception_columns: ClassVar[tuple[str, ...] | None] = None

    def __init__(self, settings: Settings, packs: PackRegistry) -> None:
        self.settings = settings
        self.packs = packs

    async def prepare(self, events: list[EventEnvelope], state: BatchState) -> None:
        """Work on the whole batch before `handle` (results go in `state.prepared`): outside the
        transaction when `slow_prepare`, else inside it. Default: none."""
        return None

    async def load(self, connection: AsyncConnection, events: list[EventEnvelope], state: BatchState) -> None:
        """Load the rows `handle` needs, in as few queries as possible. Default: the exceptions
        (their `exception_columns`)."""
        keys = {(event.tenant_id, event.exception_id) for event in events}
        state.exceptions.update(await load_exceptions(connection, keys, self.exception_columns))

    @abstractmethod
    async def handle(self, event: EventEnvelope, state: BatchState) -> list[Emission]:
        """Apply one event to `state`; return what to emit."""


def require_exception(event: EventEnvelope, state: BatchState) -> dict[str, Any]:
    """The exception row an event refers to. Missing means intake never saw it: a validation error."""
    row = state.exception(event)
    if row is None:
        raise UnexpectedEventError(
            f"{event.event_type} for exception {event.exception_id} of tenant {event.tenant_id}, which intake never recorded"
        )
    return row
