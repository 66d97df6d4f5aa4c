"""free_port picks a port a server can bind, outside the range the kernel hands to outgoing connections."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from cluster.embedded import ports
from cluster.embedded.ports import free_port, is_port_free


def test_the_port_is_free_and_below_the_ephemeral_range() -> None:
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    picked = {free_port() for _ in range(20)}
    assert len(picked) > 1  # a random pick, not always the same port
    for port in picked:
        assert 20_000 <= port < ephemeral_low
        assert is_port_free(port)


def test_a_port_with_a_listener_is_not_free() -> None:
    with socket.socket() as listener:
        listener.bind((ports.LOOPBACK, free_port()))
        listener.listen()
        assert not is_port_free(listener.getsockname()[1])


def test_without_a_range_below_the_ephemeral_one_the_kernel_picks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "_ephemeral_range_start", lambda: 1024)
    port = free_port()
    assert port > 0 and is_port_free(port)
