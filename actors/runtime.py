"""What every actor process sets up once: logging in the runbook's format, and the database engine."""

from __future__ import annotations

import logging
import sys

from sqlalchemy.ext.asyncio import AsyncEngine

from pipeline.settings import Settings
from pipeline.storage.database import create_engine

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(settings: Settings) -> None:
    root = logging.getLogger()
    if not any(getattr(handler, "_sentinai", False) for handler in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler._sentinai = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(settings.log_level)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)


def database_engine(settings: Settings) -> AsyncEngine:
    if settings.database.url is None:
        raise RuntimeError("settings.database.url must be resolved by the composition root before actors start")
    return create_engine(settings.database.url.get_secret_value(), settings.database)
