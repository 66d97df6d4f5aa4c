"""Read the environment, once, into the frozen Settings tree."""

from __future__ import annotations

import os

from pydantic import ValidationError

from pipeline.errors import ConfigurationError
from pipeline.settings import Settings

# The runbook's own names (DATABASE_URL, ...) are read without the prefix; SENTINAI_DATABASE_URL is a mistake.
_TOP_LEVEL_KEYS = {
    name.upper() for name, field in Settings.model_fields.items() if field.validation_alias is None
}


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment (and `overrides`). Raises ConfigurationError naming the key."""
    unknown = sorted(
        name for name in os.environ
        if name.upper().startswith("SENTINAI_") and name[len("SENTINAI_"):].split("__")[0].upper() not in _TOP_LEVEL_KEYS
    )
    if unknown:
        raise ConfigurationError(f"unknown setting(s) {', '.join(unknown)}; see docs/configuration.md")
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        problems = "; ".join(
            f"{_env_name(error_entry['loc'])}: {error_entry['msg']}" for error_entry in error.errors()
        )
        raise ConfigurationError(f"invalid configuration: {problems}") from error


def _env_name(location: tuple[object, ...]) -> str:
    parts = [str(part) for part in location]
    if parts and parts[0].lower() in ("database_url", "kafka_bootstrap_servers", "ray_address"):
        return parts[0].upper()
    return "SENTINAI_" + "__".join(part.upper() for part in parts)


def masked(settings: Settings) -> dict[str, object]:
    """The effective configuration for `sentinai config show`: secrets masked."""
    return settings.model_dump(mode="json")
