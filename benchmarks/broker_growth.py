"""Does the bundled broker's cost grow with what it holds? Two probes against a fresh broker (Tansu).

- **log length**: a topic of 8 partitions is filled in steps (1 KB records, unread); at each step a
  consumer at the tail runs cycles of 100 records produced, then fetched, and the broker's CPU per
  cycle and the fetch time are reported.
- **offset commits**: one group member commits its 8 partitions in blocks of 1,000 commits; the
  broker's CPU per block is reported.

In the pipeline the broker's CPU doubles within a 60 s run (docs/benchmarks.md, "Round 7"): these
probes tell which of the two grows with what the broker holds (round 7: the log's length does, the
commits do not).

    python -m benchmarks.broker_growth [--steps 0,20000,40000,80000,160000] [--commit-blocks 6]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from benchmarks.report import save_results
from benchmarks.resources import process_cpu_s
from benchmarks.services import scratch_broker
from pipeline.kafka import ensure_topics
from pipeline.settings import KafkaSettings

_PARTITIONS = 8
_VALUE = b"x" * 1000
_CYCLES = 30
_RECORDS_PER_CYCLE = 100


async def _produce(producer: AIOKafkaProducer, topic: str, first: int, count: int) -> None:
    deliveries = [await producer.send(topic, _VALUE, key=f"key-{index}".encode()) for index in range(first, first + count)]
    await asyncio.gather(*deliveries)


async def _log_length(bootstrap: str, broker: psutil.Process, steps: list[int]) -> list[dict[str, Any]]:
    topic = f"broker-growth-{uuid.uuid4().hex[:8]}"
    await ensure_topics(KafkaSettings(partitions=_PARTITIONS), bootstrap, [topic])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=250,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=1 << 20)
    await producer.start()
    await consumer.start()
    consumer.assign([TopicPartition(topic, partition) for partition in range(_PARTITIONS)])
    results, written = [], 0
    try:
        for step in steps:
            while written < step:
                await _produce(producer, topic, written, 2000)
                written += 2000
            while await consumer.getmany(timeout_ms=300, max_records=100_000):
                pass  # read up to the tail
            started, fetches = process_cpu_s(broker), []
            for _ in range(_CYCLES):
                await _produce(producer, topic, written, _RECORDS_PER_CYCLE)
                written += _RECORDS_PER_CYCLE
                fetch_started, received = time.perf_counter(), 0
                while received < _RECORDS_PER_CYCLE:
                    received += sum(len(records) for records in (await consumer.getmany(timeout_ms=1000)).values())
                fetches.append(time.perf_counter() - fetch_started)
            fetches.sort()
            results.append({"records_in_log": step,
                            "broker_cpu_ms_per_cycle": round(1e3 * (process_cpu_s(broker) - started) / _CYCLES, 2),
                            "fetch_p50_ms": round(1e3 * fetches[len(fetches) // 2], 1), "fetch_max_ms": round(1e3 * fetches[-1], 1)})
    finally:
        await consumer.stop()
        await producer.stop()
    return results


async def _commits(bootstrap: str, broker: psutil.Process, blocks: int) -> list[dict[str, Any]]:
    topic = f"broker-commits-{uuid.uuid4().hex[:8]}"
    await ensure_topics(KafkaSettings(partitions=_PARTITIONS), bootstrap, [topic])
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"group-{topic}", enable_auto_commit=False,
                                session_timeout_ms=6000, heartbeat_interval_ms=1000)
    await consumer.start()
    results, committed = [], 0
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=200)
        partitions = sorted(consumer.assignment())
        for _ in range(blocks):
            started = process_cpu_s(broker)
            for index in range(1000):
                await consumer.commit({tp: committed + index + 1 for tp in partitions})
            committed += 1000
            results.append({"commits_before": committed - 1000,
                            "broker_cpu_s_per_1000_commits": round(process_cpu_s(broker) - started, 3)})
    finally:
        await consumer.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.broker_growth", description=__doc__.split("\n")[0])
    parser.add_argument("--steps", default="0,20000,40000,80000,160000", help="records in the log at each step")
    parser.add_argument("--commit-blocks", type=int, default=6, help="blocks of 1,000 commits (default 6)")
    parser.add_argument("--output", default="benchmarks/results/broker-growth.json")
    args = parser.parse_args()
    with scratch_broker("broker-growth") as broker:
        bootstrap = broker.bootstrap_servers
        assert broker.pid is not None
        process = psutil.Process(broker.pid)
        results = {"log_length": asyncio.run(_log_length(bootstrap, process, [int(step) for step in args.steps.split(",")])),
                   "commits": asyncio.run(_commits(bootstrap, process, args.commit_blocks))}
    print("| records in the log | broker CPU ms per cycle (100 produced + fetched) | fetch p50 / max ms |")
    print("|---|---|---|")
    for row in results["log_length"]:
        print(f"| {row['records_in_log']:,} | {row['broker_cpu_ms_per_cycle']} | {row['fetch_p50_ms']} / {row['fetch_max_ms']} |")
    print("\n| commits before | broker CPU s per 1,000 commits |\n|---|---|")
    for row in results["commits"]:
        print(f"| {row['commits_before']:,} | {row['broker_cpu_s_per_1000_commits']} |")
    save_results(args.output, vars(args), results)


if __name__ == "__main__":
    main()
