"""SIGTERM / Ctrl-C handling of the foreground commands (`sentinai up`, `sentinai worker`)."""

from __future__ import annotations

import signal

from cluster.cli import StopRequest


def test_a_signal_while_the_main_thread_holds_the_events_lock_does_not_hang() -> None:
    """Two signals at once used to deadlock `sentinai up`: the second handler ran while the main
    thread was inside `Event.wait`, holding the event's lock, and waited for that lock forever."""
    stop = StopRequest(grace_s=30)
    with stop.event._cond:  # what the main thread holds inside Event.wait
        stop.on_signal(signal.SIGTERM, None)  # returns: the event is set by another thread
        stop.on_signal(signal.SIGINT, None)
    assert stop.event.wait(timeout=5)


def test_the_signal_is_logged_with_the_grace_period(caplog) -> None:  # type: ignore[no-untyped-def]
    stop = StopRequest(grace_s=12)
    with caplog.at_level("INFO", logger="sentinai"):
        stop.on_signal(signal.SIGTERM, None)
    assert stop.event.wait(timeout=5)
    assert "received SIGTERM: stopping gracefully (grace 12s)" in caplog.text
