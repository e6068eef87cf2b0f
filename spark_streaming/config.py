"""Typed configuration of the streaming scorer.

Precedence: command-line flags > ``FRAUD_STREAM_*`` env vars > optional config file
(``FRAUD_STREAM_CONFIG_FILE``, TOML or JSON, keys = field names) > defaults. Platform-wide settings
(Kafka, MLflow, lake, model name) come from :class:`fraud_platform.settings.PlatformSettings`, so the
scorer and the Dagster platform always agree on topics, registry and lake.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, model_validator

from fraud_platform.settings import PlatformSettings


class ConfigError(ValueError):
    """A configuration problem stated in one line (field and offending value)."""


# field name -> env var; every field is settable from the environment.
ENV_VARS: dict[str, str] = {
    "source": "FRAUD_STREAM_SOURCE",
    "checkpoint": "FRAUD_STREAM_CHECKPOINT",
    "trigger_seconds": "FRAUD_STREAM_TRIGGER_SECONDS",
    "max_offsets_per_trigger": "FRAUD_STREAM_MAX_OFFSETS_PER_TRIGGER",
    "starting_offsets": "FRAUD_STREAM_STARTING_OFFSETS",
    "model_alias": "FRAUD_STREAM_MODEL_ALIAS",
    "model_refresh_seconds": "FRAUD_STREAM_MODEL_REFRESH_SECONDS",
    "registry_timeout_seconds": "FRAUD_STREAM_REGISTRY_TIMEOUT_SECONDS",
    "review_threshold": "FRAUD_STREAM_REVIEW_THRESHOLD",
    "block_threshold": "FRAUD_STREAM_BLOCK_THRESHOLD",
    "metrics_port": "FRAUD_STREAM_METRICS_PORT",
    "alerts_postgres_dsn": "FRAUD_ALERTS_POSTGRES_DSN",
    "alerts_table": "FRAUD_ALERTS_TABLE",
    "alerts_duckdb_path": "FRAUD_STREAM_ALERTS_DUCKDB_PATH",
    "spark_master": "FRAUD_SPARK_MASTER",
    "eof_timeout_seconds": "FRAUD_STREAM_EOF_TIMEOUT_SECONDS",
    "replica_index": "FRAUD_STREAM_REPLICA_INDEX",
    "replica_count": "FRAUD_STREAM_REPLICA_COUNT",
    "broker_outage_seconds": "FRAUD_STREAM_BROKER_OUTAGE_SECONDS",
}


class StreamConfig(BaseModel):
    """Everything the scorer needs; ``platform`` carries the shared platform settings."""

    model_config = {"extra": "forbid"}

    platform: PlatformSettings
    source: Literal["python", "native"] = "python"
    checkpoint: Path
    trigger_seconds: float = Field(1.0, ge=0, description="0 = next micro-batch as soon as the last one ends")
    # Bounds a micro-batch (the driver collects it whole): a backlog after downtime is caught up in
    # chunks instead of one batch that exhausts the driver heap (1M+ records at 2 GiB).
    max_offsets_per_trigger: int = Field(100_000, gt=0)
    starting_offsets: Literal["earliest", "latest"] = "earliest"
    model_alias: str = "champion"
    model_refresh_seconds: float = Field(30.0, gt=0)
    registry_timeout_seconds: float = Field(5.0, gt=0)
    review_threshold: float | None = Field(None, ge=0, le=1, description="Overrides the champion's threshold tag")
    block_threshold: float = Field(0.9, ge=0, le=1)
    metrics_port: int = Field(9108, ge=0, le=65535, description="0 disables the Prometheus endpoint")
    alerts_postgres_dsn: SecretStr | None = None
    alerts_table: str = Field("fraud_alerts", pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
    alerts_duckdb_path: Path
    spark_master: str = "local[2]"
    eof_timeout_seconds: float = Field(10.0, gt=0)
    # Replicas split the topic's partitions (p % replica_count == replica_index); each needs its own checkpoint.
    replica_index: int = Field(0, ge=0)
    replica_count: int = Field(1, ge=1)
    available_now: bool = False
    max_batches: int | None = Field(None, gt=0)
    # How long the scorer keeps restarting its query while the broker does not answer, then exits 1.
    broker_outage_seconds: float = Field(300.0, ge=0)

    @model_validator(mode="after")
    def _thresholds(self) -> "StreamConfig":
        if self.review_threshold is not None and self.review_threshold > self.block_threshold:
            raise ValueError(f"review_threshold={self.review_threshold} must be <= block_threshold={self.block_threshold}")
        if self.replica_index >= self.replica_count:
            raise ValueError(f"replica_index={self.replica_index} must be < replica_count={self.replica_count}")
        return self

    @property
    def topics(self):
        return self.platform.kafka.topics

    @classmethod
    def load(cls, overrides: dict[str, Any] | None = None, environ: dict[str, str] | None = None) -> "StreamConfig":
        """Build from file < env < ``overrides``; raises :class:`ConfigError` with one line."""
        environ = dict(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        config_file = environ.get("FRAUD_STREAM_CONFIG_FILE")
        if config_file:
            values.update(_read_config_file(Path(config_file)))
        for field, var in ENV_VARS.items():
            if environ.get(var, "") != "":
                values[field] = environ[var]
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        unknown = sorted(set(values) - set(cls.model_fields))
        if unknown:
            raise ConfigError(f"unknown streaming setting {unknown[0]!r} (known: {', '.join(sorted(ENV_VARS))})")
        platform = PlatformSettings.from_env()
        replica = str(values.get("replica_index", 0))
        values.setdefault("checkpoint", platform.home / "streaming" / ("checkpoint" if replica == "0" else f"checkpoint-replica-{replica}"))
        values.setdefault("alerts_duckdb_path", platform.home / "streaming" / "alerts.duckdb")
        try:
            return cls(platform=platform, **values)
        except ValidationError as error:
            first = error.errors(include_url=False)[0]
            field = ".".join(str(p) for p in first["loc"]) or "config"
            var = ENV_VARS.get(field, field)
            shown = "<secret>" if "dsn" in field else repr(first.get("input"))
            raise ConfigError(f"invalid streaming setting {field} ({var}) = {shown}: {first['msg']}") from None


def _read_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"FRAUD_STREAM_CONFIG_FILE = {str(path)!r}: file not found")
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"FRAUD_STREAM_CONFIG_FILE = {str(path)!r}: not valid {'JSON' if path.suffix == '.json' else 'TOML'} ({error})") from None
    return data.get("streaming", data) if isinstance(data, dict) else {}
