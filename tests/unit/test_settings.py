"""pipeline.settings and cluster.config.load_settings: the environment, read once, strictly."""

from __future__ import annotations

import json
import pickle

import pydantic
import pytest

from cluster.config import load_settings, masked
from pipeline.errors import ConfigurationError
from pipeline.settings import KafkaSettings, StagesSettings


@pytest.fixture(autouse=True)
def _clean(clean_env: None) -> None:
    """Every test here starts from an environment without SENTINAI_* or runbook variables."""


def test_defaults_without_any_variable() -> None:
    settings = load_settings()
    assert settings.kafka.partitions == 2  # the bundled broker's default
    assert settings.kafka.bootstrap_servers is None
    assert settings.database.url is None
    assert settings.ray.address is None
    assert settings.stages.group_id("triage") == "triage-workers"


def test_nested_sentinai_variable_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTINAI_KAFKA__PARTITIONS", "12")
    monkeypatch.setenv("SENTINAI_STAGES__TOOL__CONCURRENCY", "3")
    settings = load_settings()
    assert settings.kafka.partitions == 12
    assert settings.stages.tool.concurrency == 3
    assert settings.stages.triage.concurrency == 1


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@h/db", "postgresql+asyncpg://u:p@h/db"),
        ("postgres://u:p@h:5433/db", "postgresql+asyncpg://u:p@h:5433/db"),
        ("postgresql+asyncpg://u:p@h/db", "postgresql+asyncpg://u:p@h/db"),
    ],
)
def test_database_url_gets_the_async_driver(
    monkeypatch: pytest.MonkeyPatch, given: str, expected: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", given)
    url = load_settings().database.url
    assert url is not None
    assert url.get_secret_value() == expected


def test_runbook_variables_fold_into_kafka_and_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    settings = load_settings()
    assert settings.kafka.bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert settings.ray.address == "ray://head:10001"


def test_runbook_variable_wins_over_the_sentinai_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTINAI_KAFKA__BOOTSTRAP_SERVERS", "old:9092")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "new:9092")
    assert load_settings().kafka.bootstrap_servers == "new:9092"


@pytest.mark.parametrize("name", ["SENTINAI_FOO", "SENTINAI_KAFKA__NOPE", "SENTINAI_STAGES__TOOL__THREADS"])
def test_unknown_setting_is_rejected_by_name(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "1")
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert name in str(info.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SENTINAI_KAFKA__PARTITIONS", "zero"),
        ("SENTINAI_KAFKA__PARTITIONS", "0"),
        ("SENTINAI_LOG_LEVEL", "CHATTY"),
        ("SENTINAI_DATABASE__URL", "mysql://u:p@h/db"),
    ],
)
def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert str(info.value).startswith(f"invalid configuration: {name}: ")


def test_bad_database_url_mentions_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://u:p@h/db")
    with pytest.raises(ConfigurationError, match="DATABASE_URL must be a postgresql://"):
        load_settings()


def test_bad_database_url_is_reported_under_its_own_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://u:p@h/db")
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert str(info.value).startswith("invalid configuration: DATABASE_URL: ")


def test_prefixed_runbook_name_is_not_silently_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTINAI_DATABASE_URL", "postgresql://u:p@h/db")
    with pytest.raises(ConfigurationError, match="SENTINAI_DATABASE_URL"):
        load_settings()


def test_lower_case_unknown_setting_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("sentinai_kafka__partitions", "12")
    assert load_settings().kafka.partitions == 12
    monkeypatch.setenv("sentinai_foo", "1")
    with pytest.raises(ConfigurationError, match="(?i)sentinai_foo"):
        load_settings()


def test_masked_configuration_never_shows_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://sentinai:hunter2@db.internal/sentinai")
    settings = load_settings()
    shown = masked(settings)
    text = json.dumps(shown)
    assert "hunter2" not in text
    assert shown["database"]["url"] == "**********"  # type: ignore[index]
    assert "database_url" not in shown
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings)


def test_masked_configuration_shows_ordinary_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092")
    shown = masked(load_settings())
    assert shown["kafka"]["bootstrap_servers"] == "kafka-1:9092"  # type: ignore[index]
    assert shown["kafka"]["partitions"] == 8  # type: ignore[index]


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(pydantic.ValidationError):
        settings.kafka.partitions = 5  # type: ignore[misc]
    assert settings.kafka.partitions == 2


def test_partitions_default_to_two_on_the_bundled_broker_and_eight_on_a_kafka(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().kafka.partitions == 2
    # A stage with more consumers than that gets a partition for each.
    monkeypatch.setenv("SENTINAI_STAGES__TRIAGE__CONSUMERS", "5")
    assert load_settings().kafka.partitions == 5
    # A configured count is kept, on the bundled broker too.
    monkeypatch.setenv("SENTINAI_KAFKA__PARTITIONS", "3")
    assert load_settings().kafka.partitions == 3
    monkeypatch.delenv("SENTINAI_KAFKA__PARTITIONS")
    # With a Kafka named, by the runbook's variable or the nested one, the default stays 8.
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092")
    assert load_settings().kafka.partitions == 8
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS")
    monkeypatch.setenv("SENTINAI_KAFKA__BOOTSTRAP_SERVERS", "kafka-1:9092")
    assert load_settings().kafka.partitions == 8
    # The count travels with the settings to the actors.
    monkeypatch.delenv("SENTINAI_KAFKA__BOOTSTRAP_SERVERS")
    assert pickle.loads(pickle.dumps(load_settings())).kafka.partitions == 5


def test_topic_prefix_and_unknown_stage() -> None:
    assert KafkaSettings(topic_prefix="t1.").topic("exceptions") == "t1.exceptions"
    with pytest.raises(KeyError, match="sla_monitor"):
        StagesSettings().for_stage("sla_monitor")
