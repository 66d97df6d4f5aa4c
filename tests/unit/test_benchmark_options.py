"""benchmarks.pipeline_throughput: `--postgres-setting` is checked before anything starts."""

from __future__ import annotations

import pytest

from benchmarks.pipeline_throughput import config_summary, parse_args
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
