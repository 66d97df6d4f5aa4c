"""CPU cost of each stage per event, in one process, without Kafka or Ray.

    python -m benchmarks.stage_cost --count 5000 --batch 500 [--profile] [--database-url URL]

Runs every stage's `BatchProcessor` (the code a `StagePoolActor` runs) over batches of demo exceptions,
routing each batch's outputs to the next stage's queue as Kafka would, against a fresh PostgreSQL
(embedded in /tmp by default). For each stage it reports, per event: the Python CPU of the stage
(decode, logic, SQLAlchemy, asyncpg, encode), the wall time, the CPU PostgreSQL's backends spent,
and what pickling the batch and its result costs (what Ray does at the pool actor's boundary).
This is the floor under the pipeline's CPU per exception: the full platform adds Kafka clients, the
broker, Ray's own processes and the consumer actors on top.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pickle
import pstats
import shutil
import sys
import tempfile
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

import psutil
from pydantic import SecretStr

from actors.runtime import settle_garbage_collector
from benchmarks.measure import statement_stats
from benchmarks.publisher import prepare_events
from benchmarks.resources import python_loop_ms
from benchmarks.services import BenchServices, asyncpg_dsn
from pipeline.events import utc_now
from pipeline.packs import load_packs
from pipeline.processing import BatchProcessor
from pipeline.records import InboundRecord
from pipeline.routing import input_topic
from pipeline.settings import STAGE_NAMES, KafkaSettings, Settings
from pipeline.stages import STAGE_CLASSES
from pipeline.storage.database import create_engine
from pipeline.storage.migrate import upgrade_to_head
from pipeline.storage.tenants import sync_tenants

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _postgres_cpu_s(postmaster_pid: int | None) -> float:
    if postmaster_pid is None:
        return 0.0
    total = 0.0
    try:
        for process in [psutil.Process(postmaster_pid), *psutil.Process(postmaster_pid).children(recursive=True)]:
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                continue
    except psutil.Error:
        return 0.0
    return total


async def _prepare(settings: Settings) -> None:
    assert settings.database.url is not None
    engine = create_engine(settings.database.url.get_secret_value(), settings.database)
    try:
        await upgrade_to_head(engine)
        await sync_tenants(engine, load_packs(settings.pack_dir), utc_now())
    finally:
        await engine.dispose()


def measure(settings: Settings, count: int, batch_size: int, seed: int, postmaster_pid: int | None,
            profiler: cProfile.Profile | None, *, settle_gc: bool = True) -> dict[str, Any]:
    packs = load_packs(settings.pack_dir)
    loop = asyncio.new_event_loop()
    assert settings.database.url is not None
    engine = create_engine(settings.database.url.get_secret_value(), settings.database)
    processors = {stage: BatchProcessor(STAGE_CLASSES[stage](settings, packs), engine, settings, packs) for stage in STAGE_NAMES}
    stage_of_topic = {input_topic(settings.kafka, stage): stage for stage in STAGE_NAMES}
    queues: dict[str, deque[InboundRecord]] = {stage: deque() for stage in STAGE_NAMES}
    offsets: dict[str, int] = defaultdict(int)
    for event in prepare_events(packs, count, seed):
        topic = input_topic(settings.kafka, "intake")
        queues["intake"].append(InboundRecord(topic, 0, offsets[topic], event.key, event.value, event.headers))
        offsets[topic] += 1
    totals = {stage: defaultdict(float) for stage in STAGE_NAMES}
    if settle_gc:
        settle_garbage_collector()  # as the stage actors do once constructed
    try:
        while any(queues.values()):
            for stage in STAGE_NAMES:
                queue = queues[stage]
                while queue:
                    batch = [queue.popleft() for _ in range(min(batch_size, len(queue)))]
                    pickle_started = time.process_time()
                    pickle.loads(pickle.dumps(batch, protocol=5))
                    pickle_s = time.process_time() - pickle_started
                    pg_before = _postgres_cpu_s(postmaster_pid)
                    cpu_started, wall_started = time.process_time(), time.perf_counter()
                    if profiler is not None:
                        profiler.enable()
                    result = loop.run_until_complete(processors[stage].process(batch))
                    if profiler is not None:
                        profiler.disable()
                    cpu_s, wall_s = time.process_time() - cpu_started, time.perf_counter() - wall_started
                    pg_s = _postgres_cpu_s(postmaster_pid) - pg_before
                    pickle_started = time.process_time()
                    pickle.loads(pickle.dumps(result, protocol=5))
                    pickle_s += time.process_time() - pickle_started
                    entry = totals[stage]
                    entry["events"] += len(batch)
                    entry["batches"] += 1
                    entry["cpu_s"] += cpu_s
                    entry["wall_s"] += wall_s
                    entry["postgres_cpu_s"] += pg_s
                    entry["pickle_s"] += pickle_s
                    for out in result.outputs:
                        target = stage_of_topic.get(out.topic)
                        if target is not None:
                            queues[target].append(InboundRecord(out.topic, 0, offsets[out.topic], out.key, out.value, out.headers))
                            offsets[out.topic] += 1
    finally:
        loop.run_until_complete(engine.dispose())
        loop.close()
    per_stage = {}
    for stage, entry in totals.items():
        events = entry["events"] or 1
        per_stage[stage] = {
            "events": int(entry["events"]), "batches": int(entry["batches"]),
            "python_cpu_us_per_event": round(1e6 * entry["cpu_s"] / events, 1),
            "wall_us_per_event": round(1e6 * entry["wall_s"] / events, 1),
            "postgres_cpu_us_per_event": round(1e6 * entry["postgres_cpu_s"] / events, 1),
            "pickle_us_per_event": round(1e6 * entry["pickle_s"] / events, 1),
        }
    per_exception = {
        key: round(sum(totals[stage][source] for stage in STAGE_NAMES) * 1e6 / count, 1)
        for key, source in (("python_cpu_us", "cpu_s"), ("postgres_cpu_us", "postgres_cpu_s"), ("pickle_us", "pickle_s"),
                            ("wall_us", "wall_s"))
    }
    return {"count": count, "batch": batch_size, "stages": per_stage, "per_exception": per_exception}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stage_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=5000, help="exceptions (default 5000)")
    parser.add_argument("--batch", type=int, default=500, help="events per batch (default 500)")
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--database-url", help="admin URL of the machine's PostgreSQL (default: embedded)")
    parser.add_argument("--python-gc-defaults", action="store_true",
                        help="keep Python's garbage-collector thresholds instead of the stage actors' ones")
    parser.add_argument("--profile", action="store_true", help="cProfile the stage code; print the top functions")
    parser.add_argument("--statement-stats", action="store_true", help="embedded only: report pg_stat_statements")
    parser.add_argument("--name", default=None, help="result name (default stage-cost-b<batch>)")
    args = parser.parse_args(argv)
    run_dir = Path(tempfile.mkdtemp(prefix="sentinai-stagecost-", dir="/tmp"))
    services = BenchServices(run_dir)
    profiler = cProfile.Profile() if args.profile else None
    loop_ms_before = python_loop_ms()
    try:
        url = services.start_database(args.database_url, commit_timestamps=False, statement_stats=args.statement_stats)
        settings = Settings(
            data_dir=run_dir, kafka=KafkaSettings(bootstrap_servers="127.0.0.1:9"),
            database={"url": SecretStr(url), "pool_size": 2},  # type: ignore[arg-type]
        )
        asyncio.run(_prepare(settings))
        result = measure(settings, args.count, args.batch, args.seed, services.postmaster_pid(), profiler,
                         settle_gc=not args.python_gc_defaults)
        if services.statement_stats:
            result["postgres_statements"] = asyncio.run(statement_stats(asyncpg_dsn(url), limit=20))
        result["python_loop_ms"] = {"before": loop_ms_before, "after": python_loop_ms()}
    finally:
        for failure in services.stop():
            print(f"teardown: {failure}", file=sys.stderr)
        shutil.rmtree(run_dir, ignore_errors=True)
    print("| stage | events | batches | Python CPU µs/event | PostgreSQL CPU µs/event | pickle µs/event | wall µs/event |")
    print("|---|---|---|---|---|---|---|")
    for stage, entry in result["stages"].items():
        print(f"| {stage} | {entry['events']} | {entry['batches']} | {entry['python_cpu_us_per_event']} "
              f"| {entry['postgres_cpu_us_per_event']} | {entry['pickle_us_per_event']} | {entry['wall_us_per_event']} |")
    total = result["per_exception"]
    print(f"| **per exception** | | | {total['python_cpu_us']} | {total['postgres_cpu_us']} | {total['pickle_us']} | {total['wall_us']} |")
    print(f"host: the Python loop of `resources.python_loop_ms` took {result['python_loop_ms']['before']} ms before, "
          f"{result['python_loop_ms']['after']} ms after")
    for entry in result.get("postgres_statements", []):
        print(f"{entry['calls']:>6} calls {entry['rows']:>7} rows exec {entry['exec_ms']:>8.1f} ms plan {entry['plan_ms']:>7.1f} ms  {entry['query']}")
    if profiler is not None:
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).strip_dirs().sort_stats("tottime").print_stats(30)
        stream.write("\n")
        pstats.Stats(profiler, stream=stream).strip_dirs().sort_stats("cumulative").print_stats(45)
        result["profile_text"] = stream.getvalue()
        print(stream.getvalue())
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    name = args.name or f"stage-cost-b{args.batch}"
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
