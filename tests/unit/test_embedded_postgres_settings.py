"""The embedded PostgreSQL's settings, as `start()` gives them to the server (the server itself:
tests/integration/test_embedded_services.py)."""

from __future__ import annotations

import pytest

from cluster.embedded.postgres import server_settings, shared_buffers_for

GIB = 1024**3


@pytest.mark.parametrize(
    ("memory", "expected"),
    [
        (64 * GIB, "1GB"),  # at most 1 GB
        (24 * GIB, "1GB"),  # the development machine
        (6 * GIB, "768MB"),  # an eighth, in multiples of 128 MB
        (4 * GIB, "512MB"),
        (3 * GIB, "384MB"),
        (1 * GIB, "128MB"),  # never below PostgreSQL's own default
        (256 * 1024**2, "128MB"),
    ],
)
def test_shared_buffers_is_an_eighth_of_the_memory_between_128_mb_and_1_gb(memory: int, expected: str) -> None:
    assert shared_buffers_for(memory) == expected


def test_the_settings_are_written_as_show_prints_them() -> None:
    # `start()` compares them with the running server's `SHOW` output as text.
    assert server_settings(24 * GIB) == {"autovacuum_naptime": "5s", "max_wal_size": "4GB", "shared_buffers": "1GB"}
    assert server_settings(2 * GIB)["shared_buffers"] == "256MB"
