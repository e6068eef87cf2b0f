"""The scorer is its own deployable: no Dagster import, one-line start-up errors with exit codes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from spark_streaming.config import ConfigError, StreamConfig


def run_module(args: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spark_streaming", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout)


def test_importing_the_scorer_never_imports_dagster():
    code = ("import sys, spark_streaming.job, spark_streaming.__main__, spark_streaming.decisions, fraud_platform.ml.shadow; "
            "assert 'dagster' not in sys.modules, 'dagster imported'; "
            "assert not [m for m in sys.modules if m.startswith('fraud_platform.api')], 'the API package imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_bad_settings_name_the_field_and_value(monkeypatch):
    monkeypatch.setenv("FRAUD_STREAM_TRIGGER_SECONDS", "-3")
    with pytest.raises(ConfigError, match=r"trigger_seconds \(FRAUD_STREAM_TRIGGER_SECONDS\) = '-3'"):
        StreamConfig.load()
    monkeypatch.delenv("FRAUD_STREAM_TRIGGER_SECONDS")
    with pytest.raises(ConfigError, match="review_threshold=0.95 must be <= block_threshold=0.9"):
        StreamConfig.load({"review_threshold": 0.95, "block_threshold": 0.9})


def test_config_file_is_overridden_by_env_and_flags(tmp_path, monkeypatch):
    path = tmp_path / "stream.toml"
    path.write_text("[streaming]\ntrigger_seconds = 5\nmodel_refresh_seconds = 7\nmax_offsets_per_trigger = 1000\n")
    monkeypatch.setenv("FRAUD_STREAM_CONFIG_FILE", str(path))
    monkeypatch.setenv("FRAUD_STREAM_MODEL_REFRESH_SECONDS", "9")
    config = StreamConfig.load({"max_offsets_per_trigger": 50})
    assert (config.trigger_seconds, config.model_refresh_seconds, config.max_offsets_per_trigger) == (5.0, 9.0, 50)


@pytest.mark.slow
def test_startup_errors_are_one_line_with_distinct_exit_codes(tmp_path, registry):
    base = {"FRAUD_STREAM_METRICS_PORT": "0", "MLFLOW_TRACKING_URI": registry.tracking_uri}
    bad_config = run_module(["--trigger-seconds", "-1"], base)
    assert bad_config.returncode == 2
    assert bad_config.stderr.strip().splitlines()[-1].startswith("spark_streaming: configuration error: invalid streaming setting trigger_seconds")

    no_broker = run_module([], {**base, "FRAUD_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert no_broker.returncode == 3, no_broker.stderr
    assert "Traceback" not in no_broker.stderr
    assert "spark_streaming: Kafka broker unreachable (127.0.0.1:1)" in no_broker.stderr


@pytest.mark.slow
def test_no_champion_is_a_clear_startup_error(stream_env, registry):
    result = run_module([], {"MLFLOW_TRACKING_URI": registry.tracking_uri, "FRAUD_MODEL_NAME": "no_such_model"})
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr
    assert "no model to score with: model 'no_such_model' has no version with alias 'champion'" in result.stderr
