"""Local services for `sentinai up` with nothing configured: the bundled broker and PostgreSQL."""

from cluster.embedded.broker import BundledBroker
from cluster.embedded.ports import free_port
from cluster.embedded.postgres import EmbeddedPostgres

__all__ = ["BundledBroker", "EmbeddedPostgres", "free_port"]
