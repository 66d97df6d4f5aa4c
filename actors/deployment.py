"""Create, find, watch and stop the platform's actors on the connected Ray cluster.

Used by `sentinai up` / `sentinai worker` (through cluster.platform) and by the supervisor, which
re-creates an actor that is gone for good.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import ray
from ray import serve

from actors.consumer import StageConsumerActor
from actors.naming import SLA_MONITOR_NAME, SUPERVISOR_NAME, consumer_actor_name, pool_actor_name
from actors.sla_monitor import SlaMonitorActor
from actors.stage_pool import StagePoolActor
from actors.triage_pool import start_triage_pool, stop_triage_pool
from pipeline.settings import STAGE_NAMES, Settings

log = logging.getLogger(__name__)


@dataclass
class Deployment:
    """The platform's actors on the connected Ray cluster, found by name each time: an actor that
    Ray restarted or the supervisor re-created is the same actor to the caller."""

    settings: Settings
    stages: tuple[str, ...]
    with_sla_monitor: bool = True
    with_supervisor: bool = True
    with_triage_pool: bool = False

    def pool(self, stage: str, index: int = 0) -> Any:
        return self._actor(pool_actor_name(stage, index))

    def consumer(self, stage: str, index: int = 0) -> Any:
        return self._actor(consumer_actor_name(stage, index))

    @property
    def supervisor(self) -> Any:
        return self._actor(SUPERVISOR_NAME) if self.with_supervisor else None

    @property
    def sla_monitor(self) -> Any:
        return self._actor(SLA_MONITOR_NAME) if self.with_sla_monitor else None

    def actor_names(self) -> list[str]:
        names = []
        for stage in self.stages:
            options = self.settings.stages.for_stage(stage)
            names += [consumer_actor_name(stage, i) for i in range(options.consumers)]
            names += [pool_actor_name(stage, i) for i in range(options.concurrency)]
        return names

    def pool_handles(self) -> list[tuple[str, int, Any]]:
        return [(stage, i, self.pool(stage, i)) for stage in self.stages
                for i in range(self.settings.stages.for_stage(stage).concurrency)]

    def consumer_handles(self) -> list[tuple[str, int, Any]]:
        return [(stage, i, self.consumer(stage, i)) for stage in self.stages
                for i in range(self.settings.stages.for_stage(stage).consumers)]

    def stats(self, timeout_s: float = 10) -> dict[str, list[dict[str, Any]]]:
        result: dict[str, list[dict[str, Any]]] = {}
        for stage in self.stages:
            for index in range(self.settings.stages.for_stage(stage).consumers):
                try:
                    result.setdefault(stage, []).append(ray.get(self.consumer(stage, index).stats.remote(), timeout=timeout_s))
                except Exception as error:  # noqa: BLE001 - a dead or restarting actor is reported, not fatal
                    result.setdefault(stage, []).append({"index": index, "error": str(error)})
        return result

    def stop(self, grace_s: float, *, stop_supervisor: bool = True) -> None:
        """Graceful: the supervisor first (so it re-creates nothing), then consumers finish their
        in-flight work and commit, then every actor is removed. `sentinai worker` keeps the shared
        supervisor (`stop_supervisor=False`): it stops watching actors that are gone with their stage."""
        supervisor = self._find(SUPERVISOR_NAME) if self.with_supervisor and stop_supervisor else None
        if supervisor is not None:
            _quietly(lambda: ray.get(supervisor.stop.remote(), timeout=10))
            ray.kill(supervisor, no_restart=True)
        consumers = [c for c in (self._find(name) for name in self.actor_names() if ":consumer:" in name) if c is not None]
        try:
            ray.get([consumer.stop.remote(grace_s) for consumer in consumers], timeout=grace_s + 15)
        except Exception as error:  # noqa: BLE001 - what did not finish is redelivered after restart
            log.warning("some consumers did not stop cleanly (their work will be redelivered): %s", error)
        monitor = self._find(SLA_MONITOR_NAME) if self.with_sla_monitor else None
        if monitor is not None:
            _quietly(lambda: ray.get(monitor.stop.remote(), timeout=10))
        for actor in [self._find(name) for name in [*self.actor_names(), SLA_MONITOR_NAME]]:
            if actor is not None:
                ray.kill(actor, no_restart=True)
        if self.with_triage_pool:
            _quietly(stop_triage_pool)

    def _actor(self, name: str) -> Any:
        return ray.get_actor(name, namespace=self.settings.ray.namespace)

    def _find(self, name: str) -> Any:
        try:
            return self._actor(name)
        except ValueError:
            return None


def _quietly(call: Any) -> None:
    try:
        call()
    except Exception:  # noqa: BLE001 - best effort while stopping: the actor is killed next
        log.debug("ignored while stopping", exc_info=True)


# Batches and their results cross Ray inside the call, not through the object store. Above Ray's
# default of 100 KB an argument or result is put in the object store (a batch of 300 events is
# ~300 KB): at 1,000 exceptions/s offered that cost the raylet 5 % of a core and every call a put and
# a fetch; inline, the sustained rate went from 560 to 638/s (docs/benchmarks.md). Set per actor, so
# it holds on any cluster without changing how Ray was started there (the job's runtime_env merges).
_INLINE_BATCH_BYTES = 8 * 1024 * 1024
INLINE_BATCHES = {"env_vars": {"RAY_max_direct_call_object_size": str(_INLINE_BATCH_BYTES)}}


def start_pool_actor(settings: Settings, stage: str, index: int) -> Any:
    """The stage's pool actor `index`: the running one, or a new one."""
    options = settings.stages.for_stage(stage)
    return StagePoolActor.options(
        name=pool_actor_name(stage, index), namespace=settings.ray.namespace, num_cpus=options.actor_num_cpus,
        num_gpus=options.actor_num_gpus, get_if_exists=True, lifetime="detached", runtime_env=INLINE_BATCHES,
    ).remote(settings, stage, index)


def start_consumer_actor(settings: Settings, stage: str, index: int) -> Any:
    options = settings.stages.for_stage(stage)
    return StageConsumerActor.options(
        name=consumer_actor_name(stage, index), namespace=settings.ray.namespace, num_cpus=options.actor_num_cpus,
        get_if_exists=True, lifetime="detached", runtime_env=INLINE_BATCHES,
    ).remote(settings, stage, index, settings.ray.namespace)


def start_sla_monitor(settings: Settings) -> Any:
    return SlaMonitorActor.options(
        name=SLA_MONITOR_NAME, namespace=settings.ray.namespace, num_cpus=0.05, get_if_exists=True, lifetime="detached",
    ).remote(settings)


def deploy(settings: Settings, stages: tuple[str, ...] = STAGE_NAMES, *, sla_monitor: bool = True,
           supervisor: bool = True) -> Deployment:
    """Start (or find) the pool and consumer actors of `stages`, the SLA monitor and the supervisor.

    Every actor is named and detached: it outlives the process that started it (on a cluster, the
    platform keeps running if `sentinai up` dies; a new `sentinai up` finds the running actors), and
    `Deployment.stop` removes them by name."""
    triage_pool = "triage" in stages and settings.triage.backend != "rules"
    if triage_pool:
        start_serve(settings)
        start_triage_pool(settings)
    pools = [start_pool_actor(settings, stage, i) for stage in stages for i in range(settings.stages.for_stage(stage).concurrency)]
    # Consumers look their pools up by name, so every pool must be alive before any consumer starts.
    ray.get([pool.ping.remote() for pool in pools])
    consumers = [start_consumer_actor(settings, stage, i) for stage in stages
                 for i in range(settings.stages.for_stage(stage).consumers)]
    ray.get([consumer.ping.remote() for consumer in consumers])
    if sla_monitor:
        ray.get(start_sla_monitor(settings).stats.remote())
    if supervisor:
        from actors.supervisor import start_supervisor

        ray.get(start_supervisor(settings, sla_monitor=sla_monitor).ping.remote())
    return Deployment(settings=settings, stages=stages, with_sla_monitor=sla_monitor, with_supervisor=supervisor,
                      with_triage_pool=triage_pool)


def start_serve(settings: Settings) -> None:
    """Ray Serve's controller and HTTP proxy, with the operations API's address (one proxy per
    cluster serves every Serve application: the API at /, the triage pool has no route)."""
    serve.start(http_options={"host": settings.serve.host, "port": settings.serve.port})


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


