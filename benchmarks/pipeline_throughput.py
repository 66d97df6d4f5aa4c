"""Throughput and latency of the whole pipeline on the embedded defaults (or the machine's PostgreSQL).

    python -m benchmarks.pipeline_throughput --rate 1000 --duration 60
    python -m benchmarks.pipeline_throughput --rate 500 --duration 60 --concurrency triage=2,playbook=2
    python -m benchmarks.pipeline_throughput --rate 500 --duration 60 \\
        --database-url postgresql://postgres@127.0.0.1:5432/postgres

One run: start the bundled broker, PostgreSQL (embedded in a fresh directory under /tmp, or a fresh
database on the server `--database-url` names) and a local Ray; deploy every stage; publish a small
warm-up and wait for it; pre-generate rate × duration demo exceptions and publish them at the offered
rate for `duration` seconds (acks=all), recording each one's publish time; wait up to
`--drain-timeout` seconds for all of them to reach a final state; read throughput and latencies from
the database; sample CPU and memory of every component each second (optionally py-spy the busiest
actors mid-run). Writes `benchmarks/results/<name>.json`, prints markdown tables, and tears
everything down whatever happens. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import ray

from benchmarks import profiling
from benchmarks.measure import collect, statement_stats, wait_until_done
from benchmarks.publisher import prepare_events, publish_paced
from benchmarks.report import analyse, markdown
from benchmarks.resources import (
    POSTGRES_GROUPS,
    AutogroupBoost,
    ResourceSampler,
    busiest,
    process_groups,
    python_loop_ms,
    summarise,
)
from benchmarks.services import BenchServices, asyncpg_dsn
from benchmarks.throughput_options import (
    build_settings,
    config_summary,
    parse_args,
    postgres_settings,
    short_config,
)
from cluster import platform
from pipeline.packs import load_packs
from pipeline.settings import Settings

log = logging.getLogger("benchmarks.pipeline_throughput")

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# Variables that Settings would read and that would silently point the run elsewhere.
_FOREIGN_ENV = ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "RAY_ADDRESS")


def _consumer_totals(stats: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, int]]:
    totals: dict[str, dict[str, int]] = {}
    for stage, entries in stats.items():
        total = totals.setdefault(stage, {"records": 0, "batches": 0, "pauses": 0, "outputs": 0, "backpressure_events": 0})
        for entry in entries:
            total["records"] += entry.get("records_completed", 0)
            total["batches"] += entry.get("batches_completed", 0)
            total["pauses"] += entry.get("pauses", 0)
            total["outputs"] += entry.get("outputs_produced", 0)
            total["backpressure_events"] += entry.get("backpressure_events", 0)
    return totals


def _consumer_delta(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> dict[str, dict[str, Any]]:
    delta: dict[str, dict[str, Any]] = {}
    for stage, end in after.items():
        start = before.get(stage, {})
        entry: dict[str, Any] = {key: value - start.get(key, 0) for key, value in end.items()}
        entry["avg_batch"] = round(entry["records"] / entry["batches"], 1) if entry["batches"] else None
        delta[stage] = entry
    return delta


def _actor_pids(deployment: platform.Deployment) -> dict[int, str]:
    names: dict[int, str] = {}
    for stage, index, handle in deployment.pool_handles():
        names[int(ray.get(handle.ping.remote(), timeout=30))] = f"StagePoolActor:{stage}#{index}"
    for stage, index, handle in deployment.consumer_handles():
        names[int(ray.get(handle.ping.remote(), timeout=30))] = f"StageConsumerActor:{stage}#{index}"
    if deployment.sla_monitor is not None:
        names[int(ray.get(deployment.sla_monitor.stats.remote(), timeout=30)["pid"])] = "SlaMonitorActor"
    supervisor = getattr(deployment, "supervisor", None)
    if supervisor is not None:
        names[int(ray.get(supervisor.ping.remote(), timeout=30))] = "SupervisorActor"
    return names


class _Deadline(Exception):
    """The whole run exceeded its time bound."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise _Deadline("the benchmark exceeded its overall time bound; tearing down")


def _on_term(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@dataclass
class _Started:
    """What a run has started so far: `teardown` stops all of it, whatever happened in between."""

    services: BenchServices
    run_dir: Path
    deployment: platform.Deployment | None = None
    sampler: ResourceSampler | None = None
    boost: AutogroupBoost | None = None
    profiles: list[profiling.Profile] = field(default_factory=list)

    def teardown(self, keep_run_dir: bool) -> dict[str, Any]:
        if self.sampler is not None:
            self.sampler.stop()
        if self.boost is not None:
            self.boost.restore()
        profiling.stop(self.profiles)
        if self.deployment is not None:
            try:
                self.deployment.stop(grace_s=10)
            except Exception as error:  # noqa: BLE001 - teardown goes on
                log.warning("deployment.stop: %s", error)
        failures = self.services.stop()
        for failure in failures:
            log.warning("teardown: %s", failure)
        leftovers = _reap_children(timeout_s=20)
        if not keep_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        return {"teardown_failures": failures, "leftover_processes": leftovers}


def _start_platform(args: argparse.Namespace, started: _Started, run_id: str, result: dict[str, Any]) -> Settings:
    """Broker, PostgreSQL, schema, topics, Ray and every stage's actors, consuming."""
    services = started.services
    bootstrap = services.start_broker()
    database_url = services.start_database(args.database_url, commit_timestamps=args.commit_timestamps,
                                           statement_stats=args.statement_stats,
                                           server_settings=postgres_settings(args.postgres_setting))
    settings = build_settings(args, bootstrap, database_url, started.run_dir, run_id)
    config = config_summary(args, settings)
    result.update(name=args.name or f"rate{int(args.rate)}-{int(args.duration)}s-{config['database']}",
                  config=config, config_summary=short_config(config),
                  postgres_server_settings=services.postgres.settings if services.postgres is not None else None)
    asyncio.run(platform.prepare_storage_and_topics(settings))
    services.start_ray(namespace=settings.ray.namespace, num_cpus=args.ray_cpus, object_store_mb=256)
    began = time.monotonic()
    started.deployment = platform.deploy(settings, sla_monitor=not args.no_sla_monitor)
    platform.wait_until_consuming(started.deployment, timeout_s=args.setup_timeout)
    log.info("platform consuming after %.1f s", time.monotonic() - began)
    return settings


def _start_sampling(args: argparse.Namespace, started: _Started) -> dict[int, str]:
    """Resource sampling (and, with --nice, session priority) of every process of the run."""
    assert started.deployment is not None
    actor_pids = _actor_pids(started.deployment)
    postmaster_pid = started.services.postmaster_pid()
    broker_pid = started.services.broker.pid if started.services.broker else None
    if args.nice:
        # The machine's PostgreSQL is not ours to reprioritise (other users share it).
        started.boost = AutogroupBoost(args.nice, exclude_groups=frozenset(POSTGRES_GROUPS if args.database_url else ()))
    started.sampler = ResourceSampler(
        lambda: process_groups(driver_pid=os.getpid(), actor_pids=actor_pids, broker_pid=broker_pid,
                               postmaster_pid=postmaster_pid),
        each_sample=started.boost,
    )
    started.sampler.start()
    return actor_pids


def _schedule_profiles(args: argparse.Namespace, started: _Started, actor_pids: dict[int, str], name: str) -> threading.Timer:
    """py-spy the busiest actors (by CPU over the last 5 s) from the middle of the publishing window."""
    def profile_busiest() -> None:
        assert started.sampler is not None
        by_label = {label: pid for pid, label in actor_pids.items()}
        top = busiest(started.sampler.samples, 5, among=lambda label: label in by_label)[: args.profile_top]
        started.profiles.extend(profiling.start([(label, by_label[label]) for label, _ in top],
                                                duration_s=args.profile_seconds, out_dir=RESULTS_DIR / f"{name}.pyspy"))

    timer = threading.Timer(max(5.0, args.duration / 2 - args.profile_seconds / 2), profile_busiest)
    timer.daemon = True
    timer.start()
    return timer


def run(args: argparse.Namespace, before_start: dict[str, Any]) -> dict[str, Any]:
    for variable in [*_FOREIGN_ENV, *(key for key in os.environ if key.startswith("SENTINAI_"))]:
        if os.environ.pop(variable, None) is not None:
            log.warning("ignoring %s from the environment: the benchmark configures its own services", variable)
    run_id = uuid.uuid4().hex[:8]
    run_dir = Path(tempfile.mkdtemp(prefix=f"sentinai-bench-{run_id}-", dir="/tmp"))
    started = _Started(BenchServices(run_dir), run_dir)
    result: dict[str, Any] = {"run_dir": str(run_dir), "machine_before_start": before_start}
    log.info("run directory %s", run_dir)
    try:
        settings = _start_platform(args, started, run_id, result)
        actor_pids = _start_sampling(args, started)
        assert started.deployment is not None and started.sampler is not None and settings.database.url is not None
        packs = load_packs(settings.pack_dir)
        dsn = asyncpg_dsn(settings.database.url.get_secret_value())
        if args.warmup:
            warmup = prepare_events(packs, args.warmup, seed=args.seed + 1, source="benchmark-warmup")
            asyncio.run(publish_paced(settings, warmup, rate_per_s=min(args.rate, 500)))
            done, _ = asyncio.run(wait_until_done(dsn, args.warmup, timeout_s=args.drain_timeout))
            log.info("warm-up: %d of %d exceptions final", done, args.warmup)
        count = int(args.rate * args.duration)
        log.info("generating %d exceptions", count)
        events = prepare_events(packs, count, seed=args.seed)
        before = _consumer_totals(started.deployment.stats())
        timer = _schedule_profiles(args, started, actor_pids, result["name"]) if args.profile_seconds else None

        log.info("publishing %d exceptions at %.0f/s for %.0f s", count, args.rate, args.duration)
        outcome = asyncio.run(publish_paced(settings, events, rate_per_s=args.rate))
        log.info("published in %.1f s (%d failed); draining (timeout %.0f s)",
                 outcome.finished_at - outcome.started_at, outcome.failed, args.drain_timeout)
        done, drained_at = asyncio.run(wait_until_done(dsn, count + args.warmup, timeout_s=args.drain_timeout))
        log.info("%d of %d exceptions final, %.1f s after publishing ended", done - args.warmup, count,
                 drained_at - outcome.finished_at)
        if timer is not None:
            timer.cancel()
        result["profiles"] = profiling.finish(started.profiles, timeout_s=args.profile_seconds + 30)
        time.sleep(1.5)  # one more resource sample covering the drain's end
        started.sampler.stop()
        after = _consumer_totals(started.deployment.stats())
        collected = asyncio.run(collect(dsn, window_start=outcome.started_at, window_end=outcome.started_at + args.duration,
                                        commit_timestamps=started.services.commit_timestamps))
        result.update(analyse(events=events, outcome=outcome, collected=collected, rate_per_s=args.rate,
                              duration_s=args.duration))
        result["consumers"] = _consumer_delta(before, after)
        result["resources"] = {
            "publishing": summarise(started.sampler.samples, outcome.started_at, outcome.started_at + args.duration),
            "drain": summarise(started.sampler.samples, outcome.finished_at, drained_at + 1.5),
        }
        if started.services.statement_stats:
            result["postgres_statements"] = asyncio.run(statement_stats(dsn))
        if started.boost is not None:
            result["autogroup_boost"] = {"nice": started.boost.nice, "sessions": len(started.boost.sessions),
                                         "failures": started.boost.failures}
        result["notes"] = started.services.notes
    finally:
        result.update(started.teardown(args.keep_run_dir))
    return result


def wait_until_quiet(max_wait_s: float, *, busy_limit_pct: float = 30, quiet_s: int = 5) -> dict[str, Any]:
    """Wait until the whole machine has been under `busy_limit_pct` (of one core) for `quiet_s`
    consecutive seconds, at most `max_wait_s`: someone else's tests on a 2-core machine would
    halve the figures. Returns what was seen, for the result."""
    cores = psutil.cpu_count() or 1
    deadline = time.monotonic() + max_wait_s
    streak, busy = 0, 0.0
    while time.monotonic() < deadline:
        busy = psutil.cpu_percent(interval=1.0) * cores
        streak = streak + 1 if busy < busy_limit_pct else 0
        if streak >= quiet_s:
            return {"quiet": True, "busy_pct": round(busy, 1)}
    if max_wait_s > 0:
        log.warning("the machine is still busy (%.0f %% of one core): results will be low", busy)
    return {"quiet": max_wait_s <= 0, "busy_pct": round(busy, 1)}


def _reap_children(timeout_s: float) -> list[str]:
    """Wait for the processes this run started to exit (Ray workers linger a few seconds after
    ray.shutdown); SIGKILL those still alive after `timeout_s`, by PID. Returns what had to be killed."""
    deadline = time.monotonic() + timeout_s
    while True:
        alive = [child for child in psutil.Process().children(recursive=True) if child.is_running()
                 and child.status() != psutil.STATUS_ZOMBIE]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    killed = []
    for child in alive:
        try:
            killed.append(f"{child.pid} {child.name()}")
            child.kill()
        except psutil.Error:
            continue
    return killed


def source_version() -> dict[str, Any]:
    """The commit measured and how many tracked files differed from it (read-only git calls)."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        changed = subprocess.run(["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"],
                                 cwd=root, capture_output=True, text=True, timeout=10).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": commit, "modified_tracked_files": [line[3:] for line in changed]}


def machine() -> dict[str, Any]:
    memory = psutil.virtual_memory()
    return {"cores": psutil.cpu_count(), "cpu": _cpu_model(),
            "memory_gb": round(memory.total / 2**30, 1), "python": sys.version.split()[0],
            "kernel": os.uname().release}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return os.uname().machine


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGTERM, _on_term)
    if args.nice:
        os.nice(args.nice)
    if args.ray_worker_niceness is not None:
        os.environ["RAY_worker_niceness"] = str(args.ray_worker_niceness)
    before_start = wait_until_quiet(args.wait_quiet)
    loop_ms_before = python_loop_ms()
    # Setup (twice: the warm-up waits as long as the drain), publishing, drain, teardown.
    bound_s = int(2 * args.setup_timeout + 2 * args.drain_timeout + args.duration + 240)
    signal.alarm(bound_s)
    source = source_version()
    try:
        result = run(args, before_start)
    finally:
        signal.alarm(0)
    result["machine"] = {**machine(), "python_loop_ms": {"before": loop_ms_before, "after": python_loop_ms()}}
    result["source"] = source
    result["niceness"] = {"driver": os.nice(0), "ray_workers_added": int(os.environ.get("RAY_worker_niceness", "15"))}
    result["command"] = "python -m benchmarks.pipeline_throughput " + " ".join(argv if argv is not None else sys.argv[1:])
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{result['name']}.json"
    path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(markdown(result))
    print(f"\nresult written to {path}")
    if result.get("leftover_processes"):
        print(f"killed leftover processes: {result['leftover_processes']}")
    return 0 if result["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
