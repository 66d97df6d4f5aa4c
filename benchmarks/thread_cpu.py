"""CPU of every thread on the machine over a window, summed by (process title, thread name).

`pipeline_throughput` reports CPU per process; this splits a process by its threads, which tells a
Ray actor's Python (the thread that runs the actor's calls) from Ray's own threads (`worker.io`,
gRPC's `client.poll0` / `server.poll0`, `task_event_buff`). Threads started before Ray assigned the
worker its actor keep the name `ray::IDLE`: in an async actor (the stage consumers) that includes
the thread running its event loop. Run it beside a benchmark run:

    python -m benchmarks.thread_cpu --delay 55 --window 30 > thread-cpu.txt &
    python -m benchmarks.pipeline_throughput --rate 1000 --duration 60 --name NAME
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from collections.abc import Collection

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _threads(pids: Collection[int] | None) -> dict[tuple[str, str], tuple[str, str, int]]:
    """(pid, tid) -> (process title, thread name, CPU ticks so far), of `pids` or of every process."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")) if pids is None else map(str, pids):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                title = cmdline.read().split(b"\0")[0].decode(errors="replace")[:40]
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/stat") as stat:
                    line = stat.read()
                name = line[line.index("(") + 1 : line.rindex(")")]
                fields = line[line.rindex(")") + 2 :].split()
                found[(pid, tid)] = (title, name, int(fields[11]) + int(fields[12]))  # utime + stime
        except OSError:  # the process or thread ended while we read it
            continue
    return found


def thread_cpu(window_s: float, pids: Collection[int] | None = None) -> Counter[tuple[str, str]]:
    """CPU seconds per (process title, thread name) over the next `window_s` seconds, of the
    processes `pids` or of all. Processes with the same title (several `python`) add up."""
    before = _threads(pids)
    time.sleep(window_s)
    spent: Counter[tuple[str, str]] = Counter()
    for key, (title, name, ticks) in _threads(pids).items():
        spent[(title, name)] += (ticks - before.get(key, (title, name, 0))[2]) / _CLOCK_TICKS
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.thread_cpu", description=__doc__.split("\n")[0])
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before the window (default 0)")
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured (default 30)")
    parser.add_argument("--top", type=int, default=40, help="rows printed (default 40)")
    args = parser.parse_args()
    time.sleep(args.delay)
    spent = thread_cpu(args.window)
    print("| CPU % of one core | process | thread |\n|---|---|---|")
    for (title, name), seconds in spent.most_common(args.top):
        print(f"| {100 * seconds / args.window:.1f} | `{title}` | `{name}` |")
    print(f"\nall threads: {100 * sum(spent.values()) / args.window:.1f} % of one core over {args.window:.0f} s")


if __name__ == "__main__":
    main()
