"""What a stage consumer's CPU pays to produce a batch's outputs, against the bundled broker.

Compares the consumer loop's produce path (one record batch per partition, `StageConsumerLoop`)
with one `AIOKafkaProducer.send()` per record, the way it was done before. Both use the platform's
producer settings (`make_producer`) and wait for every acknowledgement (acks=all). Reported: client
CPU (this process) per record, and the wall time per batch.

    python -m benchmarks.produce_cost [--batches 50] [--records 300] [--value-bytes 800]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks.report import print_and_save
from benchmarks.services import scratch_broker
from pipeline.kafka import StageConsumerLoop, ensure_topics, make_consumer, make_producer
from pipeline.records import BatchResult, OutboundRecord
from pipeline.settings import KafkaSettings

_TOPIC = "produce-cost"
_PARTITIONS = 8
_ROUNDS = 2  # each way twice, interleaved, so a slow moment of the machine does not favour one


async def _measure(bootstrap: str, batches: int, records: int, value_bytes: int) -> dict[str, Any]:
    settings = KafkaSettings(partitions=_PARTITIONS)
    await ensure_topics(settings, bootstrap, [_TOPIC])
    producer = make_producer(settings, bootstrap, "produce-cost")
    loop = StageConsumerLoop(
        name="produce-cost", consumer=make_consumer(settings, bootstrap, "produce-cost", "produce-cost"), producer=producer,
        topic=_TOPIC, submit=_never_called, lanes=1, max_in_flight_per_lane=1, max_batch_events=records, fetch_timeout_ms=50,
    )
    headers = (("event_type", b"ExceptionNormalized"), ("tenant_id", b"FIN_ACME"))
    outputs = [OutboundRecord(_TOPIC, f"FIN_ACME:EXC-{uuid.uuid4().hex[:12]}".encode(), b"x" * value_bytes, headers)
               for _ in range(records)]

    async def one_send_per_record(result: BatchResult) -> None:
        deliveries = [await producer.send(out.topic, out.value, key=out.key, headers=list(out.headers)) for out in result.outputs]
        await asyncio.gather(*deliveries)

    ways: dict[str, Callable[[BatchResult], Awaitable[None]]] = {
        "send() per record": one_send_per_record, "batch per partition (StageConsumerLoop)": loop._produce,
    }
    totals: dict[str, dict[str, float]] = {name: {"cpu_s": 0.0, "wall_s": 0.0} for name in ways}
    await producer.start()
    try:
        for _ in range(_ROUNDS):
            for name, produce in ways.items():
                cpu_started, wall_started = time.process_time(), time.perf_counter()
                for _ in range(batches):
                    await produce(BatchResult(outputs=outputs))
                totals[name]["cpu_s"] += time.process_time() - cpu_started
                totals[name]["wall_s"] += time.perf_counter() - wall_started
    finally:
        await producer.stop()
        await loop.consumer.stop()  # never started; closes it quietly
    produced = _ROUNDS * batches * records
    return {
        name: {"client_cpu_us_per_record": round(1e6 * entry["cpu_s"] / produced, 1),
               "wall_ms_per_batch": round(1e3 * entry["wall_s"] / (_ROUNDS * batches), 2)}
        for name, entry in totals.items()
    }


async def _never_called(*_: Any) -> Any:
    raise AssertionError("produce_cost only produces")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.produce_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=50, help="batches per way and round (default 50)")
    parser.add_argument("--records", type=int, default=300, help="records per batch (default 300)")
    parser.add_argument("--value-bytes", type=int, default=800, help="bytes per record value (default 800)")
    parser.add_argument("--output", default="benchmarks/results/produce-cost.json")
    args = parser.parse_args()
    with scratch_broker("produce") as broker:
        results = asyncio.run(_measure(broker.bootstrap_servers, args.batches, args.records, args.value_bytes))
    print_and_save("produce path", {"client_cpu_us_per_record": "client CPU µs/record", "wall_ms_per_batch": "wall ms/batch"},
                   results, vars(args), args.output)


if __name__ == "__main__":
    main()
