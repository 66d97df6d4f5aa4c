"""Commit only what is safe: per partition, up to the lowest contiguous completed offset.

Batches of one partition complete out of order (different pool actors), so the committable offset
is the first offset not yet completed: everything below it is done and its outputs acknowledged.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

TopicPartitionKey = tuple[str, int]


@dataclass
class _PartitionTrack:
    pending: deque[int] = field(default_factory=deque)  # dispatched offsets, ascending
    done: set[int] = field(default_factory=set)
    committable: int | None = None  # next offset to commit (last contiguous done + 1)


class OffsetTracker:
    def __init__(self) -> None:
        self._partitions: dict[TopicPartitionKey, _PartitionTrack] = {}

    def dispatched(self, partition: TopicPartitionKey, offset: int) -> None:
        track = self._partitions.setdefault(partition, _PartitionTrack())
        if track.pending and offset <= track.pending[-1]:
            raise ValueError(f"offset {offset} of {partition} dispatched after {track.pending[-1]}")
        track.pending.append(offset)

    def completed(self, partition: TopicPartitionKey, offset: int) -> None:
        """Mark an offset done. One this tracker no longer follows (its partition was reset) is ignored."""
        track = self._partitions.get(partition)
        if track is None or not track.pending or offset < track.pending[0]:
            return
        track.done.add(offset)
        while track.pending and track.pending[0] in track.done:
            finished = track.pending.popleft()
            track.done.discard(finished)
            track.committable = finished + 1

    def take_commits(self) -> dict[TopicPartitionKey, int]:
        """Offsets to commit now (each once)."""
        commits = {}
        for partition, track in self._partitions.items():
            if track.committable is not None:
                commits[partition] = track.committable
                track.committable = None
        return commits

    def last_dispatched(self, partition: TopicPartitionKey) -> int | None:
        track = self._partitions.get(partition)
        return track.pending[-1] if track and track.pending else None

    def in_flight(self, partition: TopicPartitionKey | None = None) -> int:
        if partition is not None:
            track = self._partitions.get(partition)
            return len(track.pending) if track else 0
        return sum(len(track.pending) for track in self._partitions.values())

    def forget(self, partition: TopicPartitionKey) -> None:
        """Drop a revoked partition's state (its in-flight work will be redelivered to its new owner)."""
        self._partitions.pop(partition, None)
