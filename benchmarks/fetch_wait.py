"""What the consumers' fetch wait (`SENTINAI_KAFKA__FETCH_TIMEOUT_MS`) costs, against the bundled broker.

Two measurements for each wait, with the platform's consumer and producer settings:

- **delivery latency**: a producer sends a record every `--gap-ms` to an 8-partition topic and a
  consumer that polls without pause receives it; reported is the time from send to receipt. The
  bundled broker does not answer a waiting fetch when a record arrives: it looks again at intervals,
  so a record that arrives during the wait is delivered up to about half the wait later.
- **idle cost**: six consumers (one per stage) poll empty topics for `--idle-seconds`; reported is
  the CPU of the broker and of this process (the six clients), in % of one core.

    python -m benchmarks.fetch_wait [--waits 20,50,100,250,500] [--gap-ms 20] [--seconds 6]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

import psutil

from benchmarks.report import save_results
from benchmarks.resources import process_cpu_s
from benchmarks.services import scratch_broker
from pipeline.kafka import ensure_topics, make_consumer, make_producer
from pipeline.settings import KafkaSettings

_STAGES = 6


async def _delivery_latency(bootstrap: str, wait_ms: int, gap_ms: float, seconds: float) -> dict[str, float | int]:
    settings = KafkaSettings(fetch_timeout_ms=wait_ms, producer_linger_ms=0)
    topic = f"fetch-wait-latency-{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings, bootstrap, [topic])
    producer = make_producer(settings, bootstrap, "fetch-wait-producer")
    consumer = make_consumer(settings, bootstrap, f"group-{topic}", "fetch-wait-consumer", topic)
    await producer.start()
    await consumer.start()
    latencies: list[float] = []
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        deadline = time.monotonic() + seconds

        async def send() -> None:
            index = 0
            while time.monotonic() < deadline:
                await producer.send(topic, str(time.perf_counter()).encode(), key=f"key-{index}".encode())
                index += 1
                await asyncio.sleep(gap_ms / 1000)

        sender = asyncio.create_task(send())
        while time.monotonic() < deadline + 1:
            fetched = await consumer.getmany(timeout_ms=wait_ms)
            received = time.perf_counter()
            latencies += [received - float(record.value) for records in fetched.values() for record in records]
        await sender
    finally:
        await consumer.stop()
        await producer.stop()
    latencies.sort()
    return {
        "records": len(latencies),
        "p50_ms": round(1e3 * latencies[len(latencies) // 2], 1),
        "p90_ms": round(1e3 * latencies[int(len(latencies) * 0.9)], 1),
        "max_ms": round(1e3 * latencies[-1], 1),
    }


async def _idle_cost(bootstrap: str, broker_pid: int, wait_ms: int, seconds: float) -> dict[str, float]:
    settings = KafkaSettings(fetch_timeout_ms=wait_ms)
    topics = [f"fetch-wait-idle-{uuid.uuid4().hex[:8]}" for _ in range(_STAGES)]
    await ensure_topics(settings, bootstrap, topics)
    consumers = [make_consumer(settings, bootstrap, f"group-{topic}", f"idle-{index}", topic) for index, topic in enumerate(topics)]
    for consumer in consumers:
        await consumer.start()
    stopping = asyncio.Event()

    async def poll(consumer: Any) -> None:
        while not stopping.is_set():
            await consumer.getmany(timeout_ms=wait_ms)

    pollers = [asyncio.create_task(poll(consumer)) for consumer in consumers]
    try:
        await asyncio.sleep(3)  # the groups settle
        broker, client = psutil.Process(broker_pid), psutil.Process()
        broker_started, client_started, started = process_cpu_s(broker), process_cpu_s(client), time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - started
        return {"broker_cpu_pct": round(100 * (process_cpu_s(broker) - broker_started) / elapsed, 1),
                "clients_cpu_pct": round(100 * (process_cpu_s(client) - client_started) / elapsed, 1)}
    finally:
        stopping.set()
        await asyncio.gather(*pollers)
        for consumer in consumers:
            await consumer.stop()



def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fetch_wait", description=__doc__.split("\n")[0])
    parser.add_argument("--waits", default="20,50,100,250,500", help="fetch waits to try, ms (default 20,50,100,250,500)")
    parser.add_argument("--gap-ms", type=float, default=20, help="time between records for the latency test (default 20)")
    parser.add_argument("--seconds", type=float, default=6, help="length of each latency test (default 6)")
    parser.add_argument("--idle-seconds", type=float, default=10, help="length of each idle-cost test (default 10)")
    parser.add_argument("--output", default="benchmarks/results/fetch-wait.json")
    args = parser.parse_args()
    waits = [int(wait) for wait in args.waits.split(",")]
    results: dict[int, dict[str, Any]] = {}
    with scratch_broker("fetch-wait") as broker:
        bootstrap = broker.bootstrap_servers
        assert broker.pid is not None
        for wait in waits:
            results[wait] = {
                "delivery": asyncio.run(_delivery_latency(bootstrap, wait, args.gap_ms, args.seconds)),
                "idle": asyncio.run(_idle_cost(bootstrap, broker.pid, wait, args.idle_seconds)),
            }
    print(f"| fetch wait ms | delivery p50 / p90 / max ms | {_STAGES} idle consumers: broker CPU % | clients CPU % |")
    print("|---|---|---|---|")
    for wait, figures in results.items():
        delivery, idle = figures["delivery"], figures["idle"]
        print(f"| {wait} | {delivery['p50_ms']} / {delivery['p90_ms']} / {delivery['max_ms']} | "
              f"{idle['broker_cpu_pct']} | {idle['clients_cpu_pct']} |")
    save_results(args.output, vars(args), results)


if __name__ == "__main__":
    main()
