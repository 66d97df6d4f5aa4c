"""CPU and memory of each component, sampled every second with psutil.

Processes are grouped by what they are: the broker, PostgreSQL (the postmaster and all its
backends), each Ray actor (by class, stage and index, from the PIDs its `ping` returns), Ray's core
processes (gcs_server, raylet, and every other process Ray started under the driver, named by the
title Ray gives it, e.g. `ray:IDLE` for idle workers, or by its script, e.g. `ray:log_monitor`), and the driver (publisher, sampler). CPU is in percent of one core
(the machine has `psutil.cpu_count()` cores, so 200 % is a saturated 2-core machine); `other` is
the machine's busy time not accounted to any group (other users of the machine, the kernel).
RSS is summed over a group's processes, so PostgreSQL's shared buffers count once per backend
that touched them: its figure is an upper bound.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

Groups = dict[str, list[int]]


def process_groups(*, driver_pid: int, actor_pids: dict[int, str], broker_pid: int | None,
                   postmaster_pid: int | None) -> Groups:
    """Map group name -> PIDs, as of now (PostgreSQL backends and Ray workers come and go)."""
    groups: Groups = {"driver": [driver_pid]}
    claimed = {driver_pid}
    if broker_pid is not None:
        groups["broker (tansu)"] = [broker_pid]
        claimed.add(broker_pid)
    if postmaster_pid is not None:
        for group, pids in _postgres_groups(postmaster_pid).items():
            groups[group] = pids
            claimed.update(pids)
    for pid, name in actor_pids.items():
        groups.setdefault(name, []).append(pid)
        claimed.add(pid)
    try:
        descendants = psutil.Process(driver_pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    for child in descendants:
        if child.pid in claimed:
            continue
        try:
            group = _ray_process_group(child)
        except psutil.Error:
            continue
        groups.setdefault(group, []).append(child.pid)
    return groups


POSTGRES_GROUPS = ("postgres: backends", "postgres: autovacuum", "postgres: background")


def _postgres_groups(postmaster_pid: int) -> Groups:
    """PostgreSQL's processes in three groups: the backends serving the platform's connections,
    autovacuum (its launcher and workers), and the rest (postmaster, WAL writer, checkpointer, ...)."""
    backends, autovacuum, background = POSTGRES_GROUPS
    groups: Groups = {backends: [], autovacuum: [], background: [postmaster_pid]}
    try:
        children = psutil.Process(postmaster_pid).children(recursive=True)
    except psutil.Error:
        return groups
    for child in children:
        try:
            title = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "autovacuum" in title:
            groups[autovacuum].append(child.pid)
        elif _BACKGROUND_PROCESS.search(title):
            groups[background].append(child.pid)
        else:
            groups[backends].append(child.pid)
    return groups


# Titles PostgreSQL gives its own processes (`postgres: walwriter`, ...); a backend's title names
# its user, database and client instead.
_BACKGROUND_PROCESS = re.compile(r"postgres: (checkpointer|background writer|walwriter|wal writer|logical replication|"
                                 r"archiver|stats collector|io worker|walsummarizer|startup|logger)")


def _ray_process_group(process: psutil.Process) -> str:
    """What a process Ray started is: its core binaries by name, a worker by the title Ray gives it
    (`ray::IDLE`, `ray::ServeReplica:...`, `ray::DashboardAgent`), Ray's Python services by script."""
    name = process.name()
    if name in ("gcs_server", "raylet"):
        return f"ray:{name}"
    if name == "py-spy":
        return "py-spy (profiler)"
    command = process.cmdline()
    if command and command[0].startswith("ray::"):
        return "ray:" + command[0][5:].split(".", 1)[0].split(" ", 1)[0]
    for part in command[1:3]:
        if part.endswith(".py"):
            return "ray:" + part.rsplit("/", 1)[-1][:-3]
    return "ray:other"


@dataclass
class Sample:
    at: float  # time.time()
    cpu_pct: dict[str, float]  # percent of one core, per group
    rss_bytes: dict[str, int]
    machine_busy_pct: float  # all cores, percent of one core
    iowait_pct: float
    steal_pct: float


@dataclass
class ResourceSampler:
    """A daemon thread sampling `groups()` every `interval_s` until `stop()`."""

    groups: Callable[[], Groups]
    interval_s: float = 1.0
    each_sample: Callable[[Groups], None] | None = None
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _previous: dict[int, tuple[float, float]] = field(default_factory=dict)  # pid -> (cpu seconds, at)
    _processes: dict[int, psutil.Process] = field(default_factory=dict)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="resource-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        cores = psutil.cpu_count() or 1
        last_times = psutil.cpu_times()
        while not self._stop.wait(self.interval_s):
            try:
                groups = self.groups()
                if self.each_sample is not None:
                    self.each_sample(groups)
            except Exception:  # noqa: BLE001 - a failed lookup skips one sample, never the run
                continue
            now = time.monotonic()
            cpu: dict[str, float] = {}
            rss: dict[str, int] = {}
            for name, pids in groups.items():
                cpu[name], rss[name] = 0.0, 0
                for pid in pids:
                    used = self._measure(pid, now)
                    if used is not None:
                        cpu[name] += used[0]
                        rss[name] += used[1]
            times = psutil.cpu_times()
            busy, iowait, steal = _machine_shares(last_times, times)
            last_times = times
            self.samples.append(Sample(time.time(), cpu, rss, busy * cores, iowait * cores, steal * cores))

    def _measure(self, pid: int, now: float) -> tuple[float, int] | None:
        process = self._processes.get(pid)
        try:
            if process is None:
                process = self._processes[pid] = psutil.Process(pid)
            with process.oneshot():
                times = process.cpu_times()
                rss = process.memory_info().rss
        except psutil.Error:
            self._processes.pop(pid, None)
            return None
        seconds = times.user + times.system
        previous = self._previous.get(pid)
        self._previous[pid] = (seconds, now)
        if previous is None:
            return 0.0, rss  # first sight: no interval yet
        return 100.0 * (seconds - previous[0]) / max(1e-6, now - previous[1]), rss


class AutogroupBoost:
    """Give the run's processes scheduling priority on a shared machine.

    With `kernel.sched_autogroup_enabled`, CFS first shares the CPU fairly between *sessions*
    (autogroups), and a process's nice value only counts inside its own session: `nice -n -10` on
    the benchmark does not stop another user's compile in another session from taking half the
    machine, and the broker (started in its own session) gets as much CPU as all of Ray. Writing a
    nice value to /proc/<pid>/autogroup sets it for that process's whole session; this does it once
    for every session that holds one of the run's processes (needs root for negative values)."""

    def __init__(self, nice: int, *, exclude_groups: frozenset[str] = frozenset()) -> None:
        self.nice = nice
        self.exclude_groups = exclude_groups  # processes this run did not start (the machine's PostgreSQL)
        self.sessions: dict[str, tuple[int, str]] = {}  # session -> (a pid in it, its nice before)
        self.failures: list[str] = []

    def __call__(self, groups: Groups) -> None:
        for name, pids in groups.items():
            if name in self.exclude_groups:
                continue
            for pid in pids:
                path = f"/proc/{pid}/autogroup"
                try:
                    with open(path) as handle:
                        session, _, before = handle.read().split()
                    if session in self.sessions:
                        continue
                    with open(path, "w") as handle:
                        handle.write(str(self.nice))
                    self.sessions[session] = (pid, before)
                except (OSError, ValueError) as error:
                    if len(self.failures) < 5:
                        self.failures.append(f"{path}: {error}")

    def restore(self) -> None:
        """Put back the niceness of every session still alive (most end with the run)."""
        for pid, before in self.sessions.values():
            try:
                with open(f"/proc/{pid}/autogroup", "w") as handle:
                    handle.write(before)
            except OSError:
                continue


def python_loop_ms(rounds: int = 5) -> float:
    """CPU milliseconds for `sum(i * i for i in range(1_000_000))`, the fastest of `rounds`: how fast
    this host runs plain Python just now. Hosts that all report an AMD EPYC ran it in 54-90 ms within a
    minute (round 7) and in 61-110 ms (round 11), and the pipeline's figures move with it, so each
    result records it, before the run and after, to compare runs across hosts and hours."""
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        sum(i * i for i in range(1_000_000))
        best = min(best, time.process_time() - started)
    return round(1000 * best, 1)


def process_cpu_s(process: psutil.Process) -> float:
    """User plus system CPU seconds the process has used so far."""
    times = process.cpu_times()
    return times.user + times.system


def _machine_shares(before: Any, after: Any) -> tuple[float, float, float]:
    """Busy, iowait and steal shares (0..100 of all cores) between two psutil.cpu_times()."""
    deltas = {name: getattr(after, name) - getattr(before, name) for name in after._fields}
    total = sum(deltas.values()) or 1e-9
    idle = deltas.get("idle", 0.0) + deltas.get("iowait", 0.0)
    return 100.0 * (total - idle) / total, 100.0 * deltas.get("iowait", 0.0) / total, 100.0 * deltas.get("steal", 0.0) / total


def summarise(samples: list[Sample], start: float, end: float) -> dict[str, Any]:
    """avg and max CPU % and max RSS per group over samples taken in [start, end], plus `other`."""
    window = [sample for sample in samples if start <= sample.at <= end]
    if not window:
        return {"samples": 0, "groups": {}}
    names = sorted({name for sample in window for name in sample.cpu_pct})
    groups: dict[str, dict[str, float]] = {}
    for name in names:
        cpu = [sample.cpu_pct.get(name, 0.0) for sample in window]
        rss = [sample.rss_bytes.get(name, 0) for sample in window]
        groups[name] = {"cpu_avg_pct": sum(cpu) / len(cpu), "cpu_max_pct": max(cpu), "rss_max_mb": max(rss) / 2**20}
    other = [max(0.0, s.machine_busy_pct - sum(s.cpu_pct.values())) for s in window]
    machine = [s.machine_busy_pct for s in window]
    return {
        "samples": len(window),
        "cores": psutil.cpu_count(),
        "machine_busy_avg_pct": sum(machine) / len(machine),
        "machine_busy_max_pct": max(machine),
        "iowait_avg_pct": sum(s.iowait_pct for s in window) / len(window),
        "steal_avg_pct": sum(s.steal_pct for s in window) / len(window),
        "unaccounted_avg_pct": sum(other) / len(other),
        "groups": groups,
    }


def busiest(samples: list[Sample], last_s: float, among: Callable[[str], bool]) -> list[tuple[str, float]]:
    """Groups accepted by `among`, by average CPU over the last `last_s` seconds, busiest first."""
    if not samples:
        return []
    since = samples[-1].at - last_s
    recent = [sample for sample in samples if sample.at >= since]
    totals: dict[str, float] = {}
    for sample in recent:
        for name, pct in sample.cpu_pct.items():
            if among(name):
                totals[name] = totals.get(name, 0.0) + pct / len(recent)
    return sorted(totals.items(), key=lambda item: -item[1])
