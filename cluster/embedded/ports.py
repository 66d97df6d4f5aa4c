"""Local TCP port helpers for the embedded services."""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOOPBACK = "127.0.0.1"
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST_PICKED_PORT = 20_000
_PICK_ATTEMPTS = 200


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, for a server to bind soon after.

    Picked below the kernel's ephemeral range when it can be. A port from that range (the kernel's
    own pick for `bind(0)`) may be handed to any outgoing connection before the server binds it, and
    with Ray, Kafka and PostgreSQL clients connecting all the time that happened: Serve's proxy
    failed to bind its port in CI. Below the range only another listener can take the port, and a
    random pick makes two callers' collision unlikely. Falls back to the kernel's pick."""
    ephemeral_low = _ephemeral_range_start()
    if ephemeral_low > _LOWEST_PICKED_PORT:
        for port in random.sample(range(_LOWEST_PICKED_PORT, ephemeral_low), k=min(_PICK_ATTEMPTS, ephemeral_low - _LOWEST_PICKED_PORT)):
            if is_port_free(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _ephemeral_range_start() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0  # not Linux, or not readable: use the kernel's pick


def is_port_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether a server could bind `host:port` now.

    SO_REUSEADDR matches what servers set, so sockets in TIME_WAIT left by a stopped server do not
    count as "in use"; a listener (on `host` or on 0.0.0.0) does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True
