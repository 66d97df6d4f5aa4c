"""Why a hop at 500/s takes a whole broker check interval: one stage's consumer loop, a pool that
takes a fixed time, and input that arrives steadily or in bursts.

The platform's `StageConsumerLoop` (one lane, one batch in flight) reads from the bundled broker
and hands each batch to a fake pool that sleeps `--pool-ms`. A producer sends `--rate` records a
second, either one by one (`steady`, like outside sources) or in bursts every 100 ms (`bursts`,
like a stage's input: the stage before it produces each of its batches at once). Reported per fetch
wait: batches a second, records per batch, how long the broker took to answer each fetch, and each
record's age when the pool got it.

With bursts, after the pool finishes a batch the next burst has usually not arrived: the fetch
finds nothing, and the bundled broker answers only at its next check, half the wait later, so
every cycle is pool time + half the wait. With steady input records are waiting when the pool
finishes, and the fetch is answered at once.

    python -m benchmarks.fetch_cycle [--waits 50,100,250] [--rate 500] [--pool-ms 37] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from benchmarks.measure import distribution_ms
from benchmarks.report import save_results
from benchmarks.services import scratch_broker
from pipeline.kafka import ensure_topics, make_consumer, make_producer
from pipeline.kafka.consumer_loop import StageConsumerLoop
from pipeline.records import BatchResult, InboundRecord
from pipeline.settings import KafkaSettings

_BURST_INTERVAL_S = 0.1


async def _publish(producer: Any, topic: str, rate: float, seconds: float, arrival: str) -> None:
    """Values are the send time (`time.perf_counter()`), so the pool can tell each record's age."""
    started = time.perf_counter()
    sent = 0
    if arrival == "steady":
        while time.perf_counter() - started < seconds:
            await asyncio.sleep(max(0.0, started + sent / rate - time.perf_counter()))
            await producer.send(topic, str(time.perf_counter()).encode(), key=f"key-{sent}".encode())
            sent += 1
        return
    burst = 0
    while time.perf_counter() - started < seconds:
        due = round(rate * (burst + 1) * _BURST_INTERVAL_S)
        while sent < due:
            await producer.send(topic, str(time.perf_counter()).encode(), key=f"key-{sent}".encode())
            sent += 1
        burst += 1
        await asyncio.sleep(max(0.0, started + burst * _BURST_INTERVAL_S - time.perf_counter()))


async def _cycle(bootstrap: str, wait_ms: int, arrival: str, rate: float, pool_ms: float, seconds: float) -> dict[str, Any]:
    settings = KafkaSettings(partitions=2, fetch_timeout_ms=wait_ms)
    topic = f"fetch-cycle-{arrival}-{wait_ms}"
    await ensure_topics(settings, bootstrap, [topic])
    ages_s: list[float] = []
    batch_sizes: list[int] = []
    fetch_s: list[float] = []

    async def pool(lane: int, sequence: int, floor: int, records: list[InboundRecord]) -> BatchResult:
        now = time.perf_counter()
        ages_s.extend(now - float(record.value or b"0") for record in records)
        batch_sizes.append(len(records))
        await asyncio.sleep(pool_ms / 1000)
        return BatchResult()

    consumer = make_consumer(settings, bootstrap, f"group-{topic}", "fetch-cycle-consumer")
    loop = StageConsumerLoop(
        name="fetch-cycle", consumer=consumer, producer=make_producer(settings, bootstrap, "fetch-cycle-outputs"),
        topic=topic, submit=pool, lanes=1, max_in_flight_per_lane=1, max_batch_events=1000,
        fetch_timeout_ms=wait_ms, commit_interval_s=1.0,
    )
    await loop.start()
    # The broker's answer time per fetch request: aiokafka sends each through this method.
    fetcher = consumer._fetcher
    send_fetch = fetcher._proc_fetch_request

    async def timed_fetch(*args: Any) -> Any:
        started = time.perf_counter()
        try:
            return await send_fetch(*args)
        finally:
            fetch_s.append(time.perf_counter() - started)

    fetcher._proc_fetch_request = timed_fetch
    running = asyncio.create_task(loop.run())
    producer = make_producer(settings, bootstrap, "fetch-cycle-source")
    await producer.start()
    try:
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        for figures in (ages_s, batch_sizes, fetch_s):
            figures.clear()
        await _publish(producer, topic, rate, seconds, arrival)
        await asyncio.sleep(1.0)
    finally:
        await producer.stop()
        await loop.stop(grace_s=5)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    return {
        "batches_per_s": round(len(batch_sizes) / seconds, 1),
        "records_per_batch": round(statistics.mean(batch_sizes), 1) if batch_sizes else 0,
        "fetch_answered_ms": distribution_ms(fetch_s),
        "record_age_at_pool_ms": distribution_ms(ages_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fetch_cycle", description=__doc__.split("\n")[0])
    parser.add_argument("--waits", default="50,100,250", help="fetch waits to try, ms (default 50,100,250)")
    parser.add_argument("--rate", type=float, default=500, help="records a second (default 500)")
    parser.add_argument("--pool-ms", type=float, default=37, help="time the fake pool takes per batch (default 37)")
    parser.add_argument("--seconds", type=float, default=10, help="length of each run (default 10)")
    parser.add_argument("--output", default="benchmarks/results/fetch-cycle.json")
    args = parser.parse_args()
    results: dict[str, dict[str, Any]] = {}
    with scratch_broker("fetch-cycle") as broker:
        for arrival in ("bursts", "steady"):
            for wait in (int(wait) for wait in args.waits.split(",")):
                results[f"{arrival} {wait}"] = asyncio.run(
                    _cycle(broker.bootstrap_servers, wait, arrival, args.rate, args.pool_ms, args.seconds))
    print("| input | fetch wait ms | batches/s | records/batch | fetch answered p50 / p95 ms | record age at the pool p50 / p99 ms |")
    print("|---|---|---|---|---|---|")
    for key, figures in results.items():
        arrival, wait = key.split()
        fetch, age = figures["fetch_answered_ms"], figures["record_age_at_pool_ms"]
        print(f"| {arrival} | {wait} | {figures['batches_per_s']} | {figures['records_per_batch']} | "
              f"{fetch['p50']} / {fetch['p95']} | {age['p50']} / {age['p99']} |")
    save_results(args.output, vars(args), results)


if __name__ == "__main__":
    main()
