"""Two costs every output event pays, each measured the way it is done now and the way it was done
before, interleaved in one process so a slow moment of the machine does not favour one way.

- Building an output event (`EventEnvelope.derive`): pydantic's instance state set directly, against
  the same `derive` through `EventEnvelope.model_construct`.
- Hashing a consumer's batch of output keys for their partitions: together with numpy
  (`key_hashes`), against `murmur2` key by key with an empty cache (each consumer meets about one new
  key per exception).

    python -m benchmarks.output_costs [--keys 400] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from benchmarks.report import print_and_save
from pipeline.events import ENVELOPE_VERSION, EventEnvelope, EventType, derived_event_id
from pipeline.kafka import partitioner

_ROUNDS = 3  # each way this many times, interleaved; the fastest round counts


def _cpu_us_per_item(way: Callable[[], Any], calls: int, per_call_items: int) -> float:
    started = time.process_time()
    for _ in range(calls):
        way()
    return 1e6 * (time.process_time() - started) / (calls * per_call_items)


def _compare(ways: dict[str, Callable[[], Any]], calls: int, per_call_items: int) -> dict[str, float]:
    best = {name: float("inf") for name in ways}
    for _ in range(_ROUNDS):
        for name, way in ways.items():
            best[name] = min(best[name], _cpu_us_per_item(way, calls, per_call_items))
    return best


def _derive_ways() -> dict[str, Callable[[], Any]]:
    parent = EventEnvelope(
        event_id=str(uuid.uuid4()), event_type=EventType.TRIAGE_COMPLETED, tenant_id="FIN_ACME", exception_id="EXC-2026-000123",
        timestamp=datetime.now(UTC), payload={"severity": "HIGH"}, metadata={"source": "benchmark"},
    )
    now = datetime.now(UTC)

    def derive_through_model_construct() -> EventEnvelope:  # `derive` as it was before `c371254`
        return EventEnvelope.model_construct(
            event_id=derived_event_id(parent.event_id, "policy", 0), event_type=EventType.POLICY_EVALUATION_COMPLETED,
            tenant_id=parent.tenant_id, exception_id=parent.exception_id, timestamp=now, correlation_id=parent.correlation_id,
            payload={"actionable": True}, metadata={**parent.metadata, "caused_by": parent.event_id, "stage": "policy"},
            version=ENVELOPE_VERSION,
        )

    return {
        "derive (instance state set directly)": lambda: parent.derive(
            EventType.POLICY_EVALUATION_COMPLETED, stage="policy", position=0, payload={"actionable": True}, now=now),
        "derive through model_construct (before)": derive_through_model_construct,
    }


def _hash_ways(keys: list[bytes]) -> dict[str, Callable[[], Any]]:
    def one_by_one() -> list[int]:
        partitioner._positive_hash.cache_clear()
        return [partitioner.partition_for_key(key, [0, 1], [0, 1]) for key in keys]

    def together() -> list[int]:
        hashes = partitioner.key_hashes(keys)
        return [[0, 1][hashes[key] % 2] for key in keys]

    return {"key_hashes (numpy, the batch together)": together, "murmur2 key by key, cache cold": one_by_one}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.output_costs", description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=400, help="distinct output keys in a consumer's batch (default 400)")
    parser.add_argument("--repeats", type=int, default=5, help="each way's work per round: 1,000 derives or 20 batches of keys per repeat (default 5)")
    parser.add_argument("--output", default="benchmarks/results/output-costs.json")
    args = parser.parse_args()
    keys = [f"FIN_ACME:EXC-{uuid.uuid4().hex[:16]}".encode() for _ in range(args.keys)]
    results: dict[str, dict[str, Any]] = {}
    for name, us in _compare(_derive_ways(), calls=1000 * args.repeats, per_call_items=1).items():
        results[name] = {"cpu_us_per_item": round(us, 2), "item": "output event"}
    for name, us in _compare(_hash_ways(keys), calls=20 * args.repeats, per_call_items=len(keys)).items():
        results[name] = {"cpu_us_per_item": round(us, 2), "item": "output key"}
    print_and_save("way", {"cpu_us_per_item": "CPU µs per item", "item": "item"}, results, vars(args), args.output)


if __name__ == "__main__":
    main()
