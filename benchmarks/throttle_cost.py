"""What the intake consumers' rate limits cost per record (`pipeline.kafka.throttle`), interleaved
with the same records passing no throttle, so a slow moment of the machine favours neither.

- "no limit": the consumer's filter with no throttle (the other stages' consumers).
- "limits, none reached": the three demo tenants' limits, never reached (what the benchmark's load
  and a normal day pay): a bucket look-up and a token per record.
- "limits, all held then released": every record held back, then released at once (a tenant far over
  its limit): the queue in, the queue out, `held_ms` set.

    python -m benchmarks.throttle_cost [--records 1000] [--repeats 20]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from benchmarks.report import print_and_save
from pipeline.kafka.throttle import TenantLimit, TenantThrottle
from pipeline.records import InboundRecord

_ROUNDS = 3  # each way this many times, interleaved; the fastest round counts
_TENANTS = ("FIN_ACME", "FIN_GLOBEX", "HC_MERIDIAN")


def _records(count: int) -> list[InboundRecord]:
    return [InboundRecord("exceptions", index % 2, index, f"{_TENANTS[index % 3]}:EXC-{_TENANTS[index % 3]}-{index:08d}".encode(),
                          b"{}") for index in range(count)]


def _ways(records: list[InboundRecord]) -> dict[str, Callable[[], Any]]:
    roomy = TenantThrottle()
    roomy.configure({tenant: TenantLimit(events_per_s=1e12, burst=10**12) for tenant in _TENANTS})
    clock = [0.0]
    tight = TenantThrottle(clock=lambda: clock[0])
    tight.configure({tenant: TenantLimit(events_per_s=1.0, burst=1) for tenant in _TENANTS})

    def no_limit() -> list[InboundRecord]:
        return [record for record in records if True]

    def none_reached() -> list[InboundRecord]:
        return [record for record in records if roomy.admit(record)]

    def all_held_then_released() -> list[InboundRecord]:
        clock[0] += 1e9  # every bucket full again: one token each, the rest held
        admitted = [record for record in records if tight.admit(record)]
        clock[0] += 1e9
        return admitted + tight.release()

    return {"no limit": no_limit, "limits, none reached": none_reached, "limits, all held then released": all_held_then_released}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.throttle_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1000, help="records per call, as one fetch (default 1000)")
    parser.add_argument("--repeats", type=int, default=20, help="calls per way and round (default 20)")
    parser.add_argument("--output", default="benchmarks/results/throttle-cost.json")
    args = parser.parse_args()
    records = _records(args.records)
    ways = _ways(records)
    best = {name: float("inf") for name in ways}
    for _ in range(_ROUNDS):
        for name, way in ways.items():
            started = time.process_time()
            for _ in range(args.repeats):
                assert len(way()) == len(records)
            best[name] = min(best[name], time.process_time() - started)
    results = {name: {"cpu_us_per_record": round(1e6 * seconds / (args.repeats * len(records)), 3)} for name, seconds in best.items()}
    print_and_save("way", {"cpu_us_per_record": "CPU µs per record"}, results, vars(args), args.output)


if __name__ == "__main__":
    main()
