"""Local TCP port helpers for the embedded services."""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel's pick).

    Another process may take it before the caller binds it: good enough for tests and defaults.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


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
