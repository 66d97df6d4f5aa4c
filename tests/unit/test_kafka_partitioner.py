"""The platform's partitioner puts every key where any Kafka client would (murmur2, Java's seed)."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from pipeline.kafka.partitioner import murmur2, partition_for_key


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
