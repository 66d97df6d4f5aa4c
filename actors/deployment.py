"""Create, find, watch and stop the platform's actors on the connected Ray cluster.

Used by `sentinai up` / `sentinai worker` (through cluster.platform) and by the supervisor, which
re-creates an actor that is gone for good.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import ray

from actors.consumer import StageConsumerActor
from actors.naming import SLA_MONITOR_NAME, consumer_actor_name, pool_actor_name
from actors.sla_monitor import SlaMonitorActor
from actors.stage_pool import StagePoolActor
from pipeline.settings import STAGE_NAMES, Settings

log = logging.getLogger(__name__)


@dataclass
class StageDeployment:
    pools: list[Any] = field(default_factory=list)
    consumers: list[Any] = field(default_factory=list)


@dataclass
class Deployment:
    """Handles of every actor `deploy` started."""

    settings: Settings
    stages: dict[str, StageDeployment] = field(default_factory=dict)
    sla_monitor: Any = None
    supervisor: Any = None

    def consumer_handles(self) -> list[tuple[str, int, Any]]:
        return [(stage, i, handle) for stage, d in self.stages.items() for i, handle in enumerate(d.consumers)]

    def pool_handles(self) -> list[tuple[str, int, Any]]:
        return [(stage, i, handle) for stage, d in self.stages.items() for i, handle in enumerate(d.pools)]

    def stats(self, timeout_s: float = 10) -> dict[str, list[dict[str, Any]]]:
        result: dict[str, list[dict[str, Any]]] = {}
        for stage, index, handle in self.consumer_handles():
            try:
                result.setdefault(stage, []).append(ray.get(handle.stats.remote(), timeout=timeout_s))
            except Exception as error:  # noqa: BLE001 - a dead or restarting actor is reported, not fatal
                result.setdefault(stage, []).append({"index": index, "error": str(error)})
        return result

    def stop(self, grace_s: float) -> None:
        """Graceful: consumers finish in-flight work and commit, then every actor is removed."""
        if self.supervisor is not None:
            # First, so it does not re-create the actors being stopped.
            try:
                ray.get(self.supervisor.stop.remote(), timeout=10)
            except Exception:  # noqa: BLE001 - it is killed below either way
                pass
            ray.kill(self.supervisor, no_restart=True)
        stops = [handle.stop.remote(grace_s) for _, _, handle in self.consumer_handles()]
        try:
            ray.get(stops, timeout=grace_s + 15)
        except Exception as error:  # noqa: BLE001 - what did not finish is redelivered after restart
            log.warning("some consumers did not stop cleanly (their work will be redelivered): %s", error)
        if self.sla_monitor is not None:
            try:
                ray.get(self.sla_monitor.stop.remote(), timeout=10)
            except Exception:  # noqa: BLE001
                pass
        for _, _, handle in [*self.consumer_handles(), *self.pool_handles()]:
            ray.kill(handle, no_restart=True)
        if self.sla_monitor is not None:
            ray.kill(self.sla_monitor, no_restart=True)


def start_pool_actor(settings: Settings, stage: str, index: int) -> Any:
    """The stage's pool actor `index`: the running one, or a new one."""
    options = settings.stages.for_stage(stage)
    return StagePoolActor.options(
        name=pool_actor_name(stage, index), namespace=settings.ray.namespace, num_cpus=options.actor_num_cpus,
        num_gpus=options.actor_num_gpus, get_if_exists=True,
    ).remote(settings, stage, index)


def start_consumer_actor(settings: Settings, stage: str, index: int) -> Any:
    options = settings.stages.for_stage(stage)
    return StageConsumerActor.options(
        name=consumer_actor_name(stage, index), namespace=settings.ray.namespace, num_cpus=options.actor_num_cpus,
        get_if_exists=True,
    ).remote(settings, stage, index, settings.ray.namespace)


def start_sla_monitor(settings: Settings) -> Any:
    return SlaMonitorActor.options(
        name=SLA_MONITOR_NAME, namespace=settings.ray.namespace, num_cpus=0.05, get_if_exists=True
    ).remote(settings)


def deploy(settings: Settings, stages: tuple[str, ...] = STAGE_NAMES, *, sla_monitor: bool = True,
           supervisor: bool = True) -> Deployment:
    """Start the pool and consumer actors of `stages`, the SLA monitor and the supervisor."""
    deployment = Deployment(settings=settings)
    for stage in stages:
        count = settings.stages.for_stage(stage).concurrency
        deployment.stages[stage] = StageDeployment(pools=[start_pool_actor(settings, stage, i) for i in range(count)])
    # Consumers look their pools up by name, so every pool must be alive before any consumer starts.
    ray.get([pool.ping.remote() for _, _, pool in deployment.pool_handles()])
    for stage in stages:
        count = settings.stages.for_stage(stage).consumers
        deployment.stages[stage].consumers = [start_consumer_actor(settings, stage, i) for i in range(count)]
    ray.get([consumer.ping.remote() for _, _, consumer in deployment.consumer_handles()])
    if sla_monitor:
        deployment.sla_monitor = start_sla_monitor(settings)
        ray.get(deployment.sla_monitor.stats.remote())
    if supervisor:
        from actors.supervisor import start_supervisor

        deployment.supervisor = start_supervisor(settings, stages, sla_monitor=sla_monitor)
        ray.get(deployment.supervisor.ping.remote())
    return deployment


def wait_until_consuming(deployment: Deployment, timeout_s: float = 60) -> None:
    """Block until each stage's group owns every partition of its topic (the group has settled)."""
    deadline = time.monotonic() + timeout_s
    partitions = deployment.settings.kafka.partitions
    while time.monotonic() < deadline:
        stats = deployment.stats()
        if all(sum(len(entry.get("assigned", [])) for entry in entries) == partitions for entries in stats.values()):
            return
        time.sleep(0.5)
    raise TimeoutError(f"consumers did not get partitions within {timeout_s}s")


