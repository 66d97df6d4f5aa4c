"""The options of `python -m benchmarks.pipeline_throughput`: its command line, checked before anything
starts; the platform settings a run deploys with; and the summary of both recorded with the result."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from pipeline.settings import (
    STAGE_NAMES,
    KafkaSettings,
    RaySettings,
    Settings,
    StageSettings,
    StagesSettings,
    TriageSettings,
    bundled_broker_partitions,
)


def _per_stage(text: str | None, *, flag: str) -> dict[str, int]:
    """`"triage=2,playbook=2"` or `"all=2"` or `"2"` (every stage) -> {stage: value}."""
    if not text:
        return {}
    values: dict[str, int] = {}
    for part in text.split(","):
        stage, _, raw = part.strip().rpartition("=")
        stage = stage or "all"
        if stage != "all" and stage not in STAGE_NAMES:
            raise SystemExit(f"{flag}: unknown stage {stage!r}; stages are {', '.join(STAGE_NAMES)}")
        for name in STAGE_NAMES if stage == "all" else (stage,):
            values[name] = int(raw)
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pipeline_throughput",
                                     description="Throughput and latency of the whole pipeline on the embedded defaults.")
    parser.add_argument("--rate", type=float, required=True, help="offered exceptions per second")
    parser.add_argument("--duration", type=float, default=60, help="seconds of publishing (default 60)")
    parser.add_argument("--name", help="result name (default derived from the settings)")
    parser.add_argument("--partitions", type=int, help="partitions of every topic (default: the platform's on the "
                        "bundled broker, 2 or the most --consumers of a stage)")
    parser.add_argument("--concurrency", help="pool actors per stage, e.g. triage=2,playbook=2 or all=2 (default 1)")
    parser.add_argument("--consumers", help="consumer actors per stage, same syntax (default 1)")
    parser.add_argument("--max-batch-events", help="events per Ray call, one value or per stage (default: the platform's, 1000)")
    parser.add_argument("--max-in-flight-batches", help="per consumer lane, one value or per stage (default: the platform's, 1)")
    parser.add_argument("--linger-ms", type=int, default=5, help="producer linger of the stages and the publisher (default 5)")
    parser.add_argument("--fetch-timeout-ms", type=int, default=KafkaSettings().fetch_timeout_ms,
                        help=f"consumer fetch wait (default: the platform's, {KafkaSettings().fetch_timeout_ms})")
    parser.add_argument("--max-poll-records", type=int, default=1000, help="records per consumer fetch (default 1000)")
    parser.add_argument("--ray-cpus", type=int, default=4, help="logical CPUs of the local Ray (default 4)")
    parser.add_argument("--actor-cpus", type=float, default=0.1, help="CPUs each actor reserves (default 0.1)")
    parser.add_argument("--db-pool-size", type=int, default=4, help="connections per actor engine (default 4)")
    parser.add_argument("--database-url", help="admin URL of the machine's PostgreSQL on 127.0.0.1: a fresh database "
                        "is created there and dropped afterwards (default: embedded PostgreSQL)")
    parser.add_argument("--commit-timestamps", action="store_true",
                        help="embedded only: turn on track_commit_timestamp to also measure commit-time latencies")
    parser.add_argument("--statement-stats", action="store_true",
                        help="embedded only: load pg_stat_statements and report the costliest statements")
    parser.add_argument("--postgres-setting", action="append", default=[], metavar="NAME=VALUE",
                        help="embedded only, repeatable: a server parameter for this run, e.g. shared_buffers=1GB")
    parser.add_argument("--triage-backend", choices=["rules", "embedded", "openai"], default="rules",
                        help="triage backend (default rules: the throughput bar is set with rules triage)")
    parser.add_argument("--no-sla-monitor", action="store_true", help="do not start the SLA monitor actor")
    parser.add_argument("--warmup", type=int, default=500, help="exceptions published and drained before measuring (default 500)")
    parser.add_argument("--drain-timeout", type=float, default=120, help="seconds to wait after publishing (default 120)")
    parser.add_argument("--setup-timeout", type=float, default=180, help="seconds for consumers to get partitions (default 180)")
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--profile-seconds", type=int, default=0, help="py-spy the busiest actors for this long mid-run (0: off)")
    parser.add_argument("--profile-top", type=int, default=3, help="how many of the busiest actors to profile (default 3)")
    parser.add_argument("--wait-quiet", type=float, default=300,
                        help="wait up to this long for the machine to be idle before starting (default 300 s)")
    parser.add_argument("--nice", type=int, default=0,
                        help="add this to the niceness of the run and everything it starts, and set it as the autogroup "
                        "niceness of every session the run's processes live in (negative needs root): on a shared "
                        "machine, -10 keeps other users' jobs from eating the measurement")
    parser.add_argument("--ray-worker-niceness", type=int, default=None,
                        help="RAY_worker_niceness: Ray adds 15 to the niceness of its workers (every actor) by default, "
                        "so on a busy machine they yield to everything else; 0 keeps them level with the driver, "
                        "the broker and PostgreSQL")
    parser.add_argument("--keep-run-dir", action="store_true", help="keep /tmp/sentinai-bench-* (logs, data) afterwards")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0:
        parser.error("--rate and --duration must be positive")
    if args.postgres_setting and args.database_url:
        parser.error("--postgres-setting applies to the embedded PostgreSQL only, not with --database-url")
    try:
        postgres_settings(args.postgres_setting)
    except ValueError as error:
        parser.error(str(error))
    return args


def build_settings(args: argparse.Namespace, bootstrap: str, database_url: str, run_dir: Path, run_id: str) -> Settings:
    concurrency = _per_stage(args.concurrency, flag="--concurrency")
    consumers = _per_stage(args.consumers, flag="--consumers")
    batch = _per_stage(args.max_batch_events, flag="--max-batch-events")
    in_flight = _per_stage(args.max_in_flight_batches, flag="--max-in-flight-batches")
    stages = {}
    for stage in STAGE_NAMES:
        options: dict[str, Any] = {"actor_num_cpus": args.actor_cpus}
        for key, given in (("concurrency", concurrency), ("consumers", consumers), ("max_batch_events", batch),
                           ("max_in_flight_batches", in_flight)):
            if stage in given:
                options[key] = given[stage]
        stages[stage] = StageSettings(**options)
    stages_settings = StagesSettings(**stages)
    partitions = bundled_broker_partitions(stages_settings) if args.partitions is None else args.partitions
    return Settings(
        data_dir=run_dir,
        kafka=KafkaSettings(
            bootstrap_servers=bootstrap, partitions=partitions, producer_linger_ms=args.linger_ms,
            fetch_timeout_ms=args.fetch_timeout_ms, max_poll_records=args.max_poll_records,
        ),
        database={"url": SecretStr(database_url), "pool_size": args.db_pool_size},  # type: ignore[arg-type]
        stages=stages_settings,
        ray=RaySettings(namespace=f"bench{run_id}", include_dashboard=False, num_cpus=args.ray_cpus, object_store_memory_mb=256),
        triage=TriageSettings(backend=args.triage_backend),
    )


def postgres_settings(assignments: list[str]) -> dict[str, str]:
    """`--postgres-setting` values as {name: value}. Raises ValueError for one that is not NAME=VALUE."""
    settings = {}
    for assignment in assignments:
        name, equals, value = assignment.partition("=")
        if not equals or not re.fullmatch(r"[a-z_.]+", name) or "'" in value:
            raise ValueError(f"--postgres-setting {assignment!r}: expected NAME=VALUE, e.g. shared_buffers=1GB")
        settings[name] = value
    return settings


def config_summary(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    stages = {stage: settings.stages.for_stage(stage).model_dump(exclude={"group_id", "actor_num_gpus"}) for stage in STAGE_NAMES}
    return {
        "rate": args.rate, "duration_s": args.duration, "partitions": settings.kafka.partitions, "linger_ms": args.linger_ms,
        "fetch_timeout_ms": args.fetch_timeout_ms, "max_poll_records": args.max_poll_records, "ray_cpus": args.ray_cpus,
        "db_pool_size": args.db_pool_size, "database": "system" if args.database_url else "embedded",
        "sla_monitor": not args.no_sla_monitor, "triage_backend": settings.triage.backend, "warmup": args.warmup,
        "seed": args.seed, "stages": stages, "postgres_settings": postgres_settings(args.postgres_setting),
    }


def short_config(config: dict[str, Any]) -> str:
    stages = config["stages"]
    parts = [f"triage={config['triage_backend']}", f"partitions={config['partitions']}", f"linger={config['linger_ms']}ms",
             f"fetch={config['fetch_timeout_ms']}ms", f"db={config['database']}", f"ray_cpus={config['ray_cpus']}"]
    parts += [f"pg:{name}={value}" for name, value in config.get("postgres_settings", {}).items()]
    for key, label in (("concurrency", "pools"), ("consumers", "consumers"), ("max_batch_events", "batch"),
                       ("max_in_flight_batches", "in_flight")):
        values = {stage: entry[key] for stage, entry in stages.items()}
        common = max(set(values.values()), key=list(values.values()).count)
        extra = ",".join(f"{stage}={v}" for stage, v in values.items() if v != common)
        parts.append(f"{label}={common}" + (f"({extra})" if extra else ""))
    return " ".join(parts)
