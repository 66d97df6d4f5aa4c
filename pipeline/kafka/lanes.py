"""Key-ordered dispatch to a pool of stage workers, one ordered *lane* per worker.

Every record's key picks a lane (a stable hash), so one exception's events always go to the same
worker. A lane numbers its batches; the worker processes a batch only when its number is the next it
expects from this consumer (`SequenceGate`), and skips later ones after a failure. The lane then
re-submits the failed batch and everything after it, in order. So a retried batch never lets a later
batch of the same key overtake it, even across a worker restart (the lane sends the lowest number it
still waits for, which a restarted worker adopts).
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pipeline.errors import is_retryable
from pipeline.records import BatchResult, InboundRecord
from pipeline.retry import RetryPolicy

log = logging.getLogger(__name__)

SKIPPED = "skipped-out-of-order"

Submit = Callable[[int, int, int, list[InboundRecord]], Awaitable[BatchResult | str]]
"""submit(lane_index, sequence, floor, records) -> BatchResult, or SKIPPED."""


def lane_for(key: bytes | None, lanes: int) -> int:
    return zlib.crc32(key or b"") % lanes


class SequenceGate:
    """The worker side: accept batch `sequence` from `consumer_id` only when it is the next one."""

    def __init__(self) -> None:
        self._expected: dict[str, int] = {}

    def admit(self, consumer_id: str, sequence: int, floor: int) -> bool:
        """Everything below `floor` has succeeded (the consumer says so), so a restarted worker, or one
        that lagged behind, may move its expectation up to it."""
        expected = max(self._expected.get(consumer_id, floor), floor)
        self._expected[consumer_id] = expected
        return expected == sequence

    def succeeded(self, consumer_id: str, sequence: int) -> None:
        self._expected[consumer_id] = sequence + 1


@dataclass
class _Pending:
    sequence: int
    records: list[InboundRecord]
    result: asyncio.Future[BatchResult | str]


class Lane:
    """One worker's ordered queue of batches, as seen by one consumer."""

    def __init__(self, index: int, submit: Submit, *, batch_retry: RetryPolicy) -> None:
        self.index = index
        self._submit = submit
        self._retry = batch_retry
        self._next_sequence = 0
        self._pending: deque[_Pending] = deque()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._pending)

    def submit(self, records: list[InboundRecord]) -> None:
        sequence = self._next_sequence
        self._next_sequence += 1
        self._pending.append(_Pending(sequence, records, self._start(sequence, self._floor(default=sequence), records)))
        self._ready.set()

    def _floor(self, default: int) -> int:
        """The lowest sequence not known to have succeeded: the worker never needs anything below it."""
        for pending in self._pending:
            done = pending.result.done() and not pending.result.cancelled() and pending.result.exception() is None
            if not (done and isinstance(pending.result.result(), BatchResult)):
                return pending.sequence
        return default

    def _start(self, sequence: int, floor: int, records: list[InboundRecord]) -> asyncio.Future[BatchResult | str]:
        return asyncio.ensure_future(self._submit(self.index, sequence, floor, records))

    async def next_result(self) -> tuple[list[InboundRecord], BatchResult]:
        """The oldest batch's result, retrying it (and re-sending those behind it) until it succeeds."""
        attempt = 0
        while True:
            while not self._pending:
                self._ready.clear()
                await self._ready.wait()
            oldest = self._pending[0]
            try:
                result = await oldest.result
            except Exception as error:  # noqa: BLE001 - classified below; the batch is retried either way
                result = error
            if isinstance(result, BatchResult):
                self._pending.popleft()
                return oldest.records, result
            attempt += 1
            await self._recover(result, attempt)

    async def _recover(self, failure: BaseException | str, attempt: int) -> None:
        """Let every batch behind the failed one settle, wait, and re-send them all in order."""
        for pending in list(self._pending)[1:]:
            await asyncio.gather(pending.result, return_exceptions=True)
        if isinstance(failure, BaseException):
            level = logging.INFO if is_retryable(failure) else logging.ERROR
            log.log(level, "lane %d: batch of %d records failed (attempt %d), retrying: %s: %s",
                    self.index, len(self._pending[0].records), attempt, type(failure).__name__, failure)
        # A skipped batch only waits for the failed one ahead of it to be re-sent: a short pause.
        delay = self._retry.delay_s(min(attempt, 6)) if isinstance(failure, BaseException) else 0.01
        await asyncio.sleep(delay)
        floor = self._pending[0].sequence
        for pending in self._pending:
            pending.result = self._start(pending.sequence, floor, pending.records)

    async def drain(self) -> list[tuple[list[InboundRecord], BatchResult]]:
        results = []
        while self._pending:
            results.append(await self.next_result())
        return results
