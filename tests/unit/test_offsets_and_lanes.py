"""pipeline.kafka.offsets (safe commits) and pipeline.kafka.lanes (key-ordered dispatch and retry).

The lanes run against a fake worker: an async submit function that keeps a SequenceGate exactly as
the stage pool actor does, so skipped batches answer SKIPPED.
"""

from __future__ import annotations

import asyncio
import zlib

import pytest

from pipeline.errors import DatabaseUnavailableError, InternalError
from pipeline.kafka.lanes import SKIPPED, Lane, SequenceGate, lane_for
from pipeline.kafka.offsets import OffsetTracker
from pipeline.records import BatchResult, InboundRecord, OutboundRecord
from pipeline.retry import RetryPolicy

TP = ("sentinai.triage", 0)
FAST_RETRY = RetryPolicy(base_delay_s=0.001, jitter_fraction=0)

# --- OffsetTracker ----------------------------------------------------------------------------------


def tracker_with(*offsets: int, partition: tuple[str, int] = TP) -> OffsetTracker:
    tracker = OffsetTracker()
    for offset in offsets:
        tracker.dispatched(partition, offset)
    return tracker


def test_out_of_order_completion_commits_only_the_contiguous_prefix() -> None:
    tracker = tracker_with(10, 11, 12, 13)
    tracker.completed(TP, 12)
    tracker.completed(TP, 13)
    assert tracker.take_commits() == {}
    assert tracker.in_flight(TP) == 4
    tracker.completed(TP, 10)
    assert tracker.take_commits() == {TP: 11}
    tracker.completed(TP, 11)
    assert tracker.take_commits() == {TP: 14}
    assert tracker.in_flight(TP) == 0


def test_take_commits_returns_each_offset_once() -> None:
    tracker = tracker_with(0, 1)
    tracker.completed(TP, 0)
    assert tracker.take_commits() == {TP: 1}
    assert tracker.take_commits() == {}
    tracker.completed(TP, 1)
    assert tracker.take_commits() == {TP: 2}
    assert tracker.take_commits() == {}


def test_gaps_in_offsets_do_not_block_commits() -> None:
    # Compacted topics and transaction markers leave holes: only dispatched offsets count.
    tracker = tracker_with(5, 9, 20)
    tracker.completed(TP, 5)
    tracker.completed(TP, 9)
    assert tracker.take_commits() == {TP: 10}


@pytest.mark.parametrize("offset", [3, 4])
def test_dispatching_a_lower_or_equal_offset_raises(offset: int) -> None:
    tracker = tracker_with(2, 4)
    with pytest.raises(ValueError, match=f"offset {offset} of .* dispatched after 4"):
        tracker.dispatched(TP, offset)
    assert tracker.in_flight(TP) == 2


def test_partitions_are_independent_and_forgettable() -> None:
    other = ("sentinai.triage", 1)
    tracker = tracker_with(0, 1)
    tracker.dispatched(other, 100)
    tracker.completed(other, 100)
    assert tracker.take_commits() == {other: 101}
    assert tracker.in_flight() == 2
    tracker.forget(TP)
    assert tracker.in_flight() == 0
    assert tracker.in_flight(TP) == 0
    tracker.dispatched(TP, 0)  # a re-assigned partition starts afresh
    assert tracker.in_flight(TP) == 1


# --- lane_for and SequenceGate ----------------------------------------------------------------------


def test_lane_for_is_a_stable_crc32() -> None:
    assert lane_for(b"FIN_ACME:EXC-1", 8) == 2 == zlib.crc32(b"FIN_ACME:EXC-1") % 8
    assert lane_for(None, 8) == 0 == lane_for(b"", 8)
    assert lane_for(b"anything", 1) == 0


def test_lane_for_spreads_keys_over_every_lane() -> None:
    lanes = [lane_for(f"FIN_ACME:EXC-{n}".encode(), 4) for n in range(200)]
    assert set(lanes) == {0, 1, 2, 3}
    assert lanes == [lane_for(f"FIN_ACME:EXC-{n}".encode(), 4) for n in range(200)]


def test_sequence_gate_admits_only_the_next_batch() -> None:
    gate = SequenceGate()
    assert gate.admit("consumer-a", 5, floor=5) is True  # first contact adopts the floor
    assert gate.admit("consumer-a", 6, floor=5) is False  # 5 has not succeeded yet
    gate.succeeded("consumer-a", 5)
    assert gate.admit("consumer-a", 6, floor=5) is True
    assert gate.admit("consumer-a", 5, floor=5) is False  # already done: never processed twice
    assert gate.admit("consumer-a", 3, floor=3) is False  # the floor only counts on first contact


def test_sequence_gate_tracks_consumers_separately() -> None:
    gate = SequenceGate()
    gate.admit("consumer-a", 0, floor=0)
    gate.succeeded("consumer-a", 0)
    assert gate.admit("consumer-b", 0, floor=0) is True
    assert gate.admit("consumer-a", 1, floor=0) is True


# --- Lane -------------------------------------------------------------------------------------------


def batch(sequence: int) -> list[InboundRecord]:
    return [InboundRecord(topic=TP[0], partition=TP[1], offset=sequence, key=b"FIN_ACME:EXC-1", value=b"{}")]


class FakeWorker:
    """A stage pool actor: gate, then process, failing the batches listed in `failures` (count each)."""

    def __init__(self, failures: dict[int, int] | None = None) -> None:
        self.gate = SequenceGate()
        self.failures = dict(failures or {})
        self.calls: list[tuple[int, int]] = []
        self.processed: list[int] = []
        self.restart_on_failure = False

    async def submit(
        self, lane: int, sequence: int, floor: int, records: list[InboundRecord]
    ) -> BatchResult | str:
        self.calls.append((sequence, floor))
        if not self.gate.admit("consumer-1", sequence, floor):
            return SKIPPED
        if self.failures.get(sequence, 0) > 0:
            self.failures[sequence] -= 1
            if self.restart_on_failure:
                self.gate = SequenceGate()
            raise DatabaseUnavailableError("PostgreSQL SQLSTATE 08006")
        self.processed.append(sequence)
        self.gate.succeeded("consumer-1", sequence)
        return BatchResult(outputs=[OutboundRecord(topic="out", key=None, value=str(sequence).encode())])


async def drain(lane: Lane) -> list[int]:
    results = await asyncio.wait_for(lane.drain(), timeout=5)
    sequences = []
    for records, result in results:
        assert [out.value for out in result.outputs] == [str(records[0].offset).encode()]
        sequences.append(records[0].offset)
    return sequences


async def test_results_come_back_in_submission_order() -> None:
    release_first = asyncio.Event()
    finished: list[int] = []

    async def submit(lane: int, sequence: int, floor: int, records: list[InboundRecord]) -> BatchResult | str:
        if sequence == 0:
            await release_first.wait()
        finished.append(sequence)
        return BatchResult(outputs=[OutboundRecord(topic="out", key=None, value=str(sequence).encode())])

    lane = Lane(3, submit, batch_retry=FAST_RETRY)
    for sequence in range(3):
        lane.submit(batch(sequence))
    assert len(lane) == 3
    pending = asyncio.ensure_future(lane.drain())
    while len(finished) < 2:
        await asyncio.sleep(0)
    assert finished == [1, 2]  # the later batches finished first...
    release_first.set()
    results = await asyncio.wait_for(pending, timeout=5)
    assert [records[0].offset for records, _ in results] == [0, 1, 2]  # ...but come back in order
    assert len(lane) == 0


async def test_a_retryable_failure_is_retried_and_later_batches_are_re_sent_after_it() -> None:
    worker = FakeWorker(failures={1: 1})
    lane = Lane(0, worker.submit, batch_retry=FAST_RETRY)
    for sequence in range(4):
        lane.submit(batch(sequence))

    assert await drain(lane) == [0, 1, 2, 3]
    assert worker.processed == [0, 1, 2, 3]  # strictly increasing: 2 and 3 never overtook 1
    assert worker.calls == [(0, 0), (1, 0), (2, 0), (3, 0), (1, 1), (2, 1), (3, 1)]


async def test_repeated_failures_keep_the_order() -> None:
    worker = FakeWorker(failures={0: 2, 2: 1})
    lane = Lane(0, worker.submit, batch_retry=FAST_RETRY)
    for sequence in range(4):
        lane.submit(batch(sequence))
    assert await drain(lane) == [0, 1, 2, 3]
    assert worker.processed == [0, 1, 2, 3]


async def test_a_non_retryable_failure_is_retried_too() -> None:
    async def submit(lane: int, sequence: int, floor: int, records: list[InboundRecord]) -> BatchResult | str:
        attempts.append(sequence)
        if len(attempts) == 1:
            raise InternalError("bug")
        return BatchResult()

    attempts: list[int] = []
    lane = Lane(0, submit, batch_retry=FAST_RETRY)
    lane.submit(batch(0))
    [(records, result)] = await asyncio.wait_for(lane.drain(), timeout=5)
    assert records == batch(0)
    assert attempts == [0, 0]


async def test_a_restarted_worker_adopts_the_lowest_pending_sequence() -> None:
    worker = FakeWorker(failures={2: 1})
    worker.restart_on_failure = True  # the failure takes the actor down: its gate starts over
    lane = Lane(0, worker.submit, batch_retry=FAST_RETRY)
    lane.submit(batch(0))
    lane.submit(batch(1))
    assert await drain(lane) == [0, 1]
    lane.submit(batch(2))
    lane.submit(batch(3))
    assert await drain(lane) == [2, 3]
    assert worker.processed == [0, 1, 2, 3]
    # Batch 3 reached the fresh gate first, with floor 2: the gate adopted 2, skipped 3, then took the re-sends.
    assert worker.calls == [(0, 0), (1, 0), (2, 2), (3, 2), (2, 2), (3, 2)]


async def test_a_restarted_worker_recovers_from_a_stale_floor() -> None:
    # Batches 0 and 1 succeed but their results are not consumed yet when batch 3 is submitted, so
    # batch 3 carries floor 0; batch 2 takes the worker down and batch 3 reaches the fresh gate.
    worker = FakeWorker(failures={2: 1})
    worker.restart_on_failure = True
    lane = Lane(0, worker.submit, batch_retry=FAST_RETRY)
    for sequence in range(4):
        lane.submit(batch(sequence))
    results = await asyncio.wait_for(lane.drain(), timeout=0.5)
    assert [records[0].offset for records, _ in results] == [0, 1, 2, 3]
    assert worker.processed == [0, 1, 2, 3]


async def test_batches_submitted_after_a_drain_continue_the_sequence() -> None:
    worker = FakeWorker()
    lane = Lane(0, worker.submit, batch_retry=FAST_RETRY)
    lane.submit(batch(0))
    assert await drain(lane) == [0]
    lane.submit(batch(1))
    assert await drain(lane) == [1]
    assert worker.calls == [(0, 0), (1, 1)]
