"""The platform's partitioner puts every key where any Kafka client would (murmur2, Java's seed)."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from pipeline.kafka import partitioner
from pipeline.kafka.partitioner import key_hashes, murmur2, partition_for_key


def _keys() -> list[bytes]:
    generator = random.Random(7)
    keys = [b"", b"a", b"ab", b"abc", b"abcd", b"\xff\xfe\xfd", "tenant-é:EXC-1".encode()]
    keys += [f"acme-capital:EXC-{generator.randrange(10**9)}".encode() for _ in range(300)]
    keys += [bytes(generator.randrange(256) for _ in range(length)) for length in range(1, 70)]
    return keys


def test_murmur2_is_bit_for_bit_the_java_clients_hash() -> None:
    for key in _keys():
        assert murmur2(key) == aiokafka_murmur2(key), key


def test_known_values_from_the_java_client() -> None:
    # org.apache.kafka.common.utils.UtilsTest#testMurmur2 (signed ints there)
    cases = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
             b"a-little-bit-longer-string": -1486304829, b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
             b"abc": 479470107}
    for key, signed in cases.items():
        assert murmur2(key) == signed & 0xFFFFFFFF, key


def test_partition_for_key_matches_aiokafkas_default_partitioner() -> None:
    partitions = list(range(8))
    for key in _keys():
        assert partition_for_key(key, partitions, partitions) == DefaultPartitioner()(key, partitions, partitions)


def test_a_record_without_key_goes_to_an_available_partition() -> None:
    assert partition_for_key(None, [0, 1, 2, 3], [2]) == 2
    assert partition_for_key(None, [0, 1, 2, 3], []) in {0, 1, 2, 3}


def test_a_batchs_keys_hashed_together_land_where_each_alone_would() -> None:
    keys = _keys()
    generator = random.Random(11)
    batch = keys + [None] + generator.sample(keys, 50)  # repeats and a keyless record, as outputs have
    hashes = key_hashes(batch)
    assert len(keys) >= 32 and set(hashes) == set(keys)  # many keys: the numpy path
    partitions = list(range(8))
    for key in keys:
        assert hashes[key] == murmur2(key) & 0x7FFFFFFF, key
        assert partitions[hashes[key] % len(partitions)] == DefaultPartitioner()(key, partitions, partitions)


def test_a_few_keys_are_hashed_one_by_one_to_the_same_values() -> None:
    few = _keys()[:5]
    assert key_hashes(few) == {key: murmur2(key) & 0x7FFFFFFF for key in few}
    assert key_hashes([]) == {} and key_hashes([None]) == {}


def test_a_long_key_in_a_batch_is_hashed_by_itself_to_the_same_value(monkeypatch: pytest.MonkeyPatch) -> None:
    # A dead-lettered record keeps its original key, which can be any length: it must not widen the
    # matrix the batch's keys are hashed in.
    widths: list[int] = []
    hash_together = partitioner._murmur2_of_each

    def recording(keys: list[bytes]) -> object:
        widths.append(max(map(len, keys)))
        return hash_together(keys)

    monkeypatch.setattr(partitioner, "_murmur2_of_each", recording)
    long_key = bytes(random.Random(5).randrange(256) for _ in range(100_000))
    batch = [*_keys(), long_key]
    hashes = key_hashes(batch)
    assert widths and max(widths) <= 256
    assert hashes[long_key] == murmur2(long_key) & 0x7FFFFFFF
    assert all(hashes[key] == murmur2(key) & 0x7FFFFFFF for key in batch)
