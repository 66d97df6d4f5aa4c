"""Kafka's default partitioner for keyed records (murmur2 of the key), a few times cheaper than aiokafka's.

Every output record is keyed `tenant_id:exception_id`, so the consumers hash about eight keys per
exception. aiokafka's murmur2 handles one byte at a time in Python and was ~12 % of a consumer
actor's CPU at saturation; this one reads the key's 32-bit words in one `struct` call and keeps a
bounded cache of recent keys (one exception's events pass through in quick succession). A batch's
many keys are hashed together with numpy (`key_hashes`). The result is the Java client's
`Utils.murmur2` bit for bit, so records land on the partition any Kafka client would choose for the
same key (tests/unit/test_kafka_partitioner.py compares it with aiokafka's).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_RECENT_KEYS = 1 << 16
_KEYS_WORTH_NUMPY = 32
"""From this many distinct keys `key_hashes` hashes them with numpy: its fixed cost (about 30
array operations) is that of 20-25 keys hashed one by one."""
_LONGEST_KEY_FOR_NUMPY = 256
"""numpy hashes a batch as a matrix as wide as its longest key; a longer key (a dead-lettered
record's, which can be anything) is hashed by itself, so no key makes the matrix large."""


def murmur2(data: bytes) -> int:
    """org.apache.kafka.common.utils.Utils.murmur2, as an unsigned 32-bit value."""
    length = len(data)
    h = _SEED ^ length
    words = length >> 2
    for k in struct.unpack_from(f"<{words}I", data):
        k = (k * _M) & _MASK
        k ^= k >> 24
        h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    tail = length & 3
    if tail:
        rest = length & ~3
        if tail >= 3:
            h ^= data[rest + 2] << 16
        if tail >= 2:
            h ^= data[rest + 1] << 8
        h = ((h ^ data[rest]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


@lru_cache(maxsize=_RECENT_KEYS)
def _positive_hash(key: bytes) -> int:
    return murmur2(key) & 0x7FFFFFFF


_NP_SEED, _NP_M, _NP_MASK = np.uint64(_SEED), np.uint64(_M), np.uint64(_MASK)
_NP_13, _NP_15, _NP_24 = np.uint64(13), np.uint64(15), np.uint64(24)


def _murmur2_of_each(keys: Sequence[bytes]) -> np.ndarray:
    """`murmur2` of each key, computed for all of them at once: the words' mixing, which does not
    depend on the running hash, in one pass over a matrix of words; then the running hash one word
    position at a time, kept for every position so each key takes it after its own last word."""
    lengths = np.array([len(key) for key in keys], dtype=np.int64)
    width = ((int(lengths.max()) >> 2) + 1) << 2  # every key's words, and a whole word for its tail
    data = np.frombuffer(b"".join([key.ljust(width, b"\0") for key in keys]), dtype=np.uint8).reshape(len(keys), width)
    words = data.view("<u4")  # (keys, word positions), little-endian as Java reads them
    mixed = words.T.astype(np.uint64)  # (word positions, keys)
    mixed *= _NP_M
    mixed &= _NP_MASK
    mixed ^= mixed >> _NP_24
    mixed *= _NP_M
    mixed &= _NP_MASK
    running = np.empty((mixed.shape[0] + 1, len(keys)), dtype=np.uint64)  # the hash after 0, 1, ... words
    np.bitwise_xor(_NP_SEED, lengths.astype(np.uint64), out=running[0])
    for position in range(mixed.shape[0]):
        step = running[position + 1]
        np.multiply(running[position], _NP_M, out=step)
        step &= _NP_MASK
        step ^= mixed[position]
    keys_index = np.arange(len(keys))
    whole_words = lengths >> 2
    h = running[whole_words, keys_index]
    tail = words[keys_index, whole_words].astype(np.uint64)  # the 1-3 bytes after the last word; padding is zero
    h = np.where((lengths & 3) > 0, ((h ^ tail) * _NP_M) & _NP_MASK, h)
    h ^= h >> _NP_13
    h *= _NP_M
    h &= _NP_MASK
    return h ^ (h >> _NP_15)


def key_hashes(keys: Iterable[bytes | None]) -> dict[bytes, int]:
    """The partitioning hash (`murmur2 & 0x7FFFFFFF`) of each distinct key; None is skipped. A batch
    of outputs has hundreds of keys at saturation: one by one they were 12-19 % of a consumer's
    Python; together, 400 keys cost 1.1 µs each instead of 7.7 (`python -m benchmarks.output_costs`)."""
    distinct = dict.fromkeys(key for key in keys if key is not None)
    together = [key for key in distinct if len(key) <= _LONGEST_KEY_FOR_NUMPY]
    if len(together) < _KEYS_WORTH_NUMPY:
        return {key: _positive_hash(key) for key in distinct}
    hashes = dict(zip(together, (_murmur2_of_each(together) & np.uint64(0x7FFFFFFF)).tolist(), strict=True))
    for key in distinct:
        if key not in hashes:
            hashes[key] = _positive_hash(key)
    return hashes


def partition_for_key(key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]) -> int:
    """The `partitioner` callable aiokafka's producer takes: murmur2 for a key, random without one."""
    if key is None:
        return random.choice(available or all_partitions)
    return all_partitions[_positive_hash(key) % len(all_partitions)]
