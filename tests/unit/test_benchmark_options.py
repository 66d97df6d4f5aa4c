"""benchmarks.throughput_options: options are checked before anything starts, and default to the platform's."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.throughput_options import build_settings, config_summary, parse_args
from pipeline.settings import Settings


def test_postgres_settings_are_name_value_pairs_for_the_embedded_server_only(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse_args(["--rate", "10", "--postgres-setting", "shared_buffers=1GB",
                       "--postgres-setting", "log_autovacuum_min_duration=0"])
    assert args.postgres_setting == ["shared_buffers=1GB", "log_autovacuum_min_duration=0"]

    for bad in (["--postgres-setting", "shared_buffers"], ["--postgres-setting", "x=1'; DROP"],
                ["--postgres-setting", "work_mem=64MB", "--database-url", "postgresql://postgres@127.0.0.1/postgres"]):
        with pytest.raises(SystemExit):
            parse_args(["--rate", "10", *bad])
        assert "--postgres-setting" in capsys.readouterr().err


def test_the_settings_are_recorded_with_the_run() -> None:
    args = parse_args(["--rate", "10", "--postgres-setting", "shared_buffers=1GB"])
    assert config_summary(args, Settings())["postgres_settings"] == {"shared_buffers": "1GB"}


def test_partitions_default_to_the_platforms_on_the_bundled_broker(tmp_path: Path) -> None:
    def partitions(*options: str) -> int:
        args = parse_args(["--rate", "10", *options])
        return build_settings(args, "127.0.0.1:1", "postgresql://x@127.0.0.1/x", tmp_path, "r").kafka.partitions

    assert partitions() == 2
    assert partitions("--consumers", "playbook=3") == 3
    assert partitions("--partitions", "8") == 8
