"""benchmarks.thread_cpu: a thread's CPU over the window lands under its process title and thread name."""

from __future__ import annotations

import os
import threading

from benchmarks.thread_cpu import thread_cpu


def test_a_busy_thread_is_counted_under_its_process_and_name() -> None:
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(1000))

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        spent = thread_cpu(1.0, pids=[os.getpid()])
    finally:
        stop.set()
        spinner.join()
    with open(f"/proc/{os.getpid()}/cmdline", "rb") as cmdline:
        title = cmdline.read().split(b"\0")[0].decode()[:40]
    with open("/proc/self/comm") as comm:
        name = comm.read().strip()
    # The spinning thread inherits the process's name. On a loaded machine (a test session's Ray
    # actors on two cores) it may get only a small share of the second, so the lower bound is small:
    # the main thread, which only sleeps, would not reach it. Other threads of this process may share
    # the name (Ray's Python threads in a test session), so the upper bound is the machine's:
    # seconds, not clock ticks, cannot exceed every core for the window.
    assert 0.05 <= spent[(title, name)] <= 1.0 * (os.cpu_count() or 1) + 0.2
    assert all(seconds >= 0 for seconds in spent.values())

