"""The domain: events, stage logic, packs, errors, storage and Kafka adapters. Never imports ray."""

__all__ = ["errors", "events", "packs", "settings", "stages", "storage"]
