"""The one typed place where the platform reads its configuration.

Every setting comes from an environment variable with an embedded-default fallback, so the same
code runs on one laptop (local lake folder, SQLite MLflow, embedded broker) and on the
docker-compose stack (MinIO, MLflow server, Apache Kafka) by changing env vars only. Dagster
resources (``fraud_platform.defs.resources``) and the streaming job both build from here.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def platform_home() -> Path:
    """Root folder for all embedded-default state (lake, broker, MLflow, DuckDB, Dagster)."""
    return Path(_env("FRAUD_PLATFORM_HOME", ".fraud_platform")).resolve()


class TopicNames(BaseModel):
    """Kafka topic names; each configurable so a shared cluster can use its own naming scheme."""

    transactions: str = "transactions"
    transactions_dlq: str = "transactions.dlq"
    labels: str = "labels"
    labels_dlq: str = "labels.dlq"
    predictions: str = "fraud_predictions"
    partitions: int = Field(3, ge=1, description="Partition count used when the platform creates topics")
    # Embedded broker: one node, so 1/1. A real cluster (compose: three brokers) uses 3/2, so an
    # acks=all write survives the loss of any one broker.
    replication_factor: int = Field(1, ge=1, description="Replicas per partition when the platform creates topics")
    min_insync_replicas: int = Field(1, ge=1, description="min.insync.replicas of created topics (acks=all waits for this many)")

    @classmethod
    def from_env(cls) -> "TopicNames":
        return cls(
            transactions=_env("FRAUD_TOPIC_TRANSACTIONS", "transactions"),
            transactions_dlq=_env("FRAUD_TOPIC_TRANSACTIONS_DLQ", "transactions.dlq"),
            labels=_env("FRAUD_TOPIC_LABELS", "labels"),
            labels_dlq=_env("FRAUD_TOPIC_LABELS_DLQ", "labels.dlq"),
            predictions=_env("FRAUD_TOPIC_PREDICTIONS", "fraud_predictions"),
            partitions=int(_env("FRAUD_TOPIC_PARTITIONS", "3")),
            replication_factor=int(_env("FRAUD_TOPIC_REPLICATION_FACTOR", "1")),
            min_insync_replicas=int(_env("FRAUD_TOPIC_MIN_INSYNC_REPLICAS", "1")),
        )

    @model_validator(mode="after")
    def _isr_fits_replicas(self) -> "TopicNames":
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError(
                f"min_insync_replicas={self.min_insync_replicas} (FRAUD_TOPIC_MIN_INSYNC_REPLICAS) must be <= "
                f"replication_factor={self.replication_factor} (FRAUD_TOPIC_REPLICATION_FACTOR): acks=all writes would always fail"
            )
        return self

    def dlq_for(self, topic: str) -> str:
        return {self.transactions: self.transactions_dlq, self.labels: self.labels_dlq}.get(topic, f"{topic}.dlq")


class LakeSettings(BaseModel):
    """Where the lake zones live: a local folder (default) or an S3 bucket (MinIO/AWS)."""

    backend: Literal["local", "s3"] = "local"
    root: str = Field(description="Local folder, or key prefix inside the bucket for S3")
    bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"

    @classmethod
    def from_env(cls) -> "LakeSettings":
        bucket = _env("FRAUD_LAKE_S3_BUCKET")
        return cls(
            backend="s3" if bucket else "local",
            root=_env("FRAUD_LAKE_ROOT", "lake" if bucket else str(platform_home() / "lake")),
            bucket=bucket,
            s3_endpoint_url=_env("FRAUD_LAKE_S3_ENDPOINT_URL") or _env("AWS_ENDPOINT_URL"),
            s3_region=_env("AWS_REGION", "us-east-1"),
        )


class KafkaSettings(BaseModel):
    """The one Kafka client configuration used by every producer and consumer.

    ``bootstrap_servers`` defaults to the embedded broker the project started (its address is
    read from the broker state file); SASL credentials come from env vars only, never from git.
    """

    bootstrap_servers: str | None = None
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    client_id: str = "fraud-platform"
    topics: TopicNames = Field(default_factory=TopicNames)

    @classmethod
    def from_env(cls) -> "KafkaSettings":
        password = _env("FRAUD_KAFKA_SASL_PASSWORD")
        return cls(
            bootstrap_servers=_env("FRAUD_KAFKA_BOOTSTRAP_SERVERS"),
            security_protocol=_env("FRAUD_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
            sasl_mechanism=_env("FRAUD_KAFKA_SASL_MECHANISM"),
            sasl_username=_env("FRAUD_KAFKA_SASL_USERNAME"),
            sasl_password=SecretStr(password) if password else None,
            topics=TopicNames.from_env(),
        )

    def resolved_bootstrap(self) -> str:
        """Explicit bootstrap servers, else the embedded broker's advertised address."""
        if self.bootstrap_servers:
            return self.bootstrap_servers
        from fraud_platform.infra.broker import EmbeddedBroker

        address = EmbeddedBroker.default().running_address()
        if address is None:
            raise RuntimeError(
                "No Kafka broker configured: FRAUD_KAFKA_BOOTSTRAP_SERVERS is unset and the embedded "
                "broker is not running. Start it with `fraud-platform broker start`."
            )
        return address

    def client_config(self, **overrides: object) -> dict[str, object]:
        """librdkafka configuration shared by producers, consumers and the admin client."""
        config: dict[str, object] = {
            "bootstrap.servers": self.resolved_bootstrap(),
            "security.protocol": self.security_protocol,
            "client.id": self.client_id,
        }
        if self.sasl_mechanism:
            config["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            config["sasl.username"] = self.sasl_username
        if self.sasl_password:
            config["sasl.password"] = self.sasl_password.get_secret_value()
        config.update(overrides)
        return config


class SparkSettings(BaseModel):
    """How the platform's batch Spark session is built (local[*] by default, a spark:// cluster in compose)."""

    master: str = "local[*]"
    shuffle_partitions: int = Field(4, ge=1, description="Sized for a 2-core machine: 2x cores")
    ui_enabled: bool = False
    driver_memory: str = "2g"

    @classmethod
    def from_env(cls) -> "SparkSettings":
        return cls(
            master=_env("FRAUD_SPARK_MASTER", "local[*]"),
            shuffle_partitions=int(_env("FRAUD_SPARK_SHUFFLE_PARTITIONS", "4")),
            ui_enabled=_env("FRAUD_SPARK_UI_ENABLED", "false").lower() in ("1", "true", "yes"),
            driver_memory=_env("FRAUD_SPARK_DRIVER_MEMORY", "2g"),
        )


class LakeProcessingSettings(BaseModel):
    """Label maturity and data-quality bounds for the processed/sandbox zones (see docs/lake.md)."""

    label_maturity_days: int = Field(7, ge=0, description="Days after a partition's end before its labels are final")
    maturity_reference: Literal["labels_watermark", "now"] = "labels_watermark"
    fraud_rate_min: float = Field(0.0, ge=0.0, le=1.0)
    fraud_rate_max: float = Field(0.05, ge=0.0, le=1.0)
    row_count_tolerance: float = Field(0.5, ge=0.0, description="Allowed relative change vs the previous partition")

    @classmethod
    def from_env(cls) -> "LakeProcessingSettings":
        return cls(
            label_maturity_days=int(_env("FRAUD_LABEL_MATURITY_DAYS", "7")),
            maturity_reference=_env("FRAUD_MATURITY_REFERENCE", "labels_watermark"),
            fraud_rate_min=float(_env("FRAUD_DQ_FRAUD_RATE_MIN", "0.0")),
            fraud_rate_max=float(_env("FRAUD_DQ_FRAUD_RATE_MAX", "0.05")),
            row_count_tolerance=float(_env("FRAUD_DQ_ROW_COUNT_TOLERANCE", "0.5")),
        )


class MonitoringSettings(BaseModel):
    """When drift or decaying live performance should trigger retraining."""

    recent_days: int = Field(7, ge=1, description="Days of recent traffic compared with the training data")
    psi_threshold: float = Field(0.25, gt=0, description="Max feature PSI above which the model is retrained")
    min_live_ap: float = Field(0.5, ge=0, le=1, description="Live average precision below which the model is retrained")
    label_maturity_days: int = Field(7, ge=0, description="Scored days younger than this have incomplete labels")

    @classmethod
    def from_env(cls) -> "MonitoringSettings":
        return cls(
            recent_days=int(_env("FRAUD_MONITORING_RECENT_DAYS", "7")),
            psi_threshold=float(_env("FRAUD_DRIFT_PSI_THRESHOLD", "0.25")),
            min_live_ap=float(_env("FRAUD_MIN_LIVE_AP", "0.5")),
            label_maturity_days=int(_env("FRAUD_LABEL_MATURITY_DAYS", "7")),
        )


class WarehouseSettings(BaseModel):
    """Where dbt builds the warehouse: the DuckDB file (``PlatformSettings.duckdb_path``, default) or a
    Postgres server (``FRAUD_DBT_TARGET=postgres``). dbt/profiles.yml reads the same env vars."""

    target: Literal["duckdb", "postgres"] = "duckdb"
    pg_host: str = "127.0.0.1"
    pg_port: int = 5432
    pg_user: str = "postgres"
    pg_password: SecretStr | None = None
    pg_database: str = "fraud"
    pg_schema: str = Field("analytics", description="Schema dbt builds models into")
    pg_source_schema: str = Field("lake", description="Schema the lake sources are loaded into for dbt")

    @classmethod
    def from_env(cls) -> "WarehouseSettings":
        password = _env("FRAUD_WAREHOUSE_PG_PASSWORD")
        return cls(
            target=_env("FRAUD_DBT_TARGET", "duckdb"),
            pg_host=_env("FRAUD_WAREHOUSE_PG_HOST", "127.0.0.1"),
            pg_port=int(_env("FRAUD_WAREHOUSE_PG_PORT", "5432")),
            pg_user=_env("FRAUD_WAREHOUSE_PG_USER", "postgres"),
            pg_password=SecretStr(password) if password else None,
            pg_database=_env("FRAUD_WAREHOUSE_PG_DATABASE", "fraud"),
            pg_schema=_env("FRAUD_WAREHOUSE_PG_SCHEMA", "analytics"),
            pg_source_schema=_env("FRAUD_WAREHOUSE_PG_SOURCE_SCHEMA", "lake"),
        )


class PlatformSettings(BaseModel):
    """All platform settings, read from env once per process."""

    home: Path
    lake: LakeSettings
    kafka: KafkaSettings
    mlflow_tracking_uri: str
    mlflow_registry_uri: str | None = None
    model_name: str = "fraud_detector"
    duckdb_path: Path
    tokenisation_key: SecretStr
    reporting_currency: str = "EUR"
    spark: SparkSettings = Field(default_factory=SparkSettings.from_env)
    lake_processing: LakeProcessingSettings = Field(default_factory=LakeProcessingSettings.from_env)
    warehouse: WarehouseSettings = Field(default_factory=WarehouseSettings.from_env)

    @classmethod
    def from_env(cls) -> "PlatformSettings":
        home = platform_home()
        return cls(
            home=home,
            lake=LakeSettings.from_env(),
            kafka=KafkaSettings.from_env(),
            mlflow_tracking_uri=_env("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"),
            mlflow_registry_uri=_env("MLFLOW_REGISTRY_URI"),
            model_name=_env("FRAUD_MODEL_NAME", "fraud_detector"),
            duckdb_path=Path(_env("FRAUD_DUCKDB_PATH", str(home / "warehouse" / "fraud.duckdb"))),
            # Dev-only default so simulations run out of the box; production sets a real key via env.
            tokenisation_key=SecretStr(_env("FRAUD_TOKENISATION_KEY", "dev-only-tokenisation-key")),
            reporting_currency=_env("FRAUD_REPORTING_CURRENCY", "EUR"),
        )

    @cached_property
    def mlflow_artifact_root(self) -> str:
        return _env("MLFLOW_ARTIFACT_ROOT", (self.home / "mlflow" / "artifacts").as_uri())
