"""What one pool call costs the consumer and the pool actor in CPU: records as NamedTuples, or as plain tuples.

A sync actor receives a batch of inbound records and returns a result with as many outputs and
stats, like `StagePoolActor.process`, with the pools' `runtime_env` (batches inline). "NamedTuples"
sends the records as they are and returns a plain holder of NamedTuple lists; "plain tuples" is the
platform's way (`pipeline.records.plain`, `inbound_records`, `BatchResult.__reduce__`). Reported:
CPU of the caller and of the actor per call, and wall time per call, each way measured twice,
interleaved. The caller's figure includes its Ray threads' periodic work: with fewer than about
100 calls per way it is noise (30 calls put the plain way's caller above the NamedTuples' here).

    python -m benchmarks.ray_call_cost [--records 450] [--calls 200]
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import psutil
import ray

from actors.deployment import INLINE_BATCHES
from benchmarks.report import print_and_save
from benchmarks.resources import process_cpu_s
from pipeline.records import BatchResult, EventStat, InboundRecord, OutboundRecord, inbound_records, plain


class NamedTupleResult:
    """A result that Ray pickles as it is: lists of NamedTuples."""

    def __init__(self, outputs: list[OutboundRecord], stats: list[EventStat]) -> None:
        self.outputs = outputs
        self.stats = stats


@ray.remote(num_cpus=0.1)
class _Pool:
    def __init__(self, outputs: list[tuple[Any, ...]], stats: list[tuple[Any, ...]]) -> None:
        self.outputs = [OutboundRecord._make(row) for row in outputs]
        self.stats = [EventStat._make(row) for row in stats]

    def named_tuples(self, records: list[InboundRecord]) -> NamedTupleResult:
        assert type(records[0]) is InboundRecord
        return NamedTupleResult(self.outputs, self.stats)

    def plain_tuples(self, rows: list[tuple[Any, ...]]) -> BatchResult:
        assert type(inbound_records(rows)[0]) is InboundRecord
        return BatchResult(self.outputs, self.stats)

    def cpu_s(self) -> float:
        return process_cpu_s(psutil.Process())



def _measure(records: int, calls: int) -> dict[str, dict[str, float]]:
    inbound = [InboundRecord("sentinai.triage", index % 8, 100_000 + index, f"FIN_ACME:EXC-{index:08d}".encode(), b"x" * 900,
                             (("sentinai-attempt", b"1"),), 1_700_000_000_000 + index) for index in range(records)]
    outputs = [OutboundRecord("sentinai.policy", f"FIN_ACME:EXC-{index:08d}".encode(), b"y" * 900,
                              (("event_type", b"TriageCompleted"),)) for index in range(records)]
    stats = [EventStat("TriageCompleted", "FIN_ACME", "completed", 0.001, None, 0.5) for _ in range(records)]
    pool = _Pool.options(runtime_env=INLINE_BATCHES).remote(plain(outputs), plain(stats))  # type: ignore[attr-defined]
    ray.get(pool.cpu_s.remote())
    caller = psutil.Process()
    ways = {
        "NamedTuples": lambda: ray.get(pool.named_tuples.remote(inbound)),
        "plain tuples (the platform)": lambda: ray.get(pool.plain_tuples.remote(plain(inbound))),
    }
    totals = {name: {"caller_s": 0.0, "actor_s": 0.0, "wall_s": 0.0} for name in ways}
    for call in ways.values():
        call()  # the first call of each way, with its one-time costs, is not measured
    for _ in range(2):
        for name, call in ways.items():
            actor_started, caller_started, wall_started = ray.get(pool.cpu_s.remote()), process_cpu_s(caller), time.perf_counter()
            for _ in range(calls):
                result = call()
                assert type(result.outputs[0]) is OutboundRecord and len(result.stats) == records
            totals[name]["wall_s"] += time.perf_counter() - wall_started
            totals[name]["caller_s"] += process_cpu_s(caller) - caller_started
            totals[name]["actor_s"] += ray.get(pool.cpu_s.remote()) - actor_started
    return {name: {key.replace("_s", "_ms_per_call"): round(1e3 * value / (2 * calls), 2) for key, value in entry.items()}
            for name, entry in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ray_call_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=450, help="records per call, and outputs per result (default 450)")
    parser.add_argument("--calls", type=int, default=200, help="calls per way and round (default 200)")
    parser.add_argument("--output", default="benchmarks/results/ray-call-cost.json")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"RAY_AUTH_MODE": os.environ["RAY_AUTH_MODE"]}})
    try:
        results = _measure(args.records, args.calls)
    finally:
        ray.shutdown()
    print_and_save("records cross as", {"caller_ms_per_call": "caller CPU ms/call", "actor_ms_per_call": "actor CPU ms/call",
                                        "wall_ms_per_call": "wall ms/call"}, results, vars(args), args.output)


if __name__ == "__main__":
    main()
