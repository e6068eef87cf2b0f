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

    @classmethod
    def from_env(cls) -> "MonitoringSettings":
        return cls(
            recent_days=int(_env("FRAUD_MONITORING_RECENT_DAYS", "7")),
            psi_threshold=float(_env("FRAUD_DRIFT_PSI_THRESHOLD", "0.25")),
            min_live_ap=float(_env("FRAUD_MIN_LIVE_AP", "0.5")),
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


class OrchestrationSettings(BaseModel):
    """How the Dagster code location runs: environment (executor choice), the first daily partition,
    and whether schedules/sensors start running on a fresh instance."""

    environment: Literal["local", "docker"] = "local"
    partitions_start: str = Field("2026-01-01", description="First daily partition (UTC date)")
    automation_running: bool = Field(True, description="Schedules and sensors start running (else stopped)")

    @classmethod
    def from_env(cls) -> "OrchestrationSettings":
        return cls(
            environment=_env("FRAUD_PLATFORM_ENV", "local"),
            partitions_start=_env("FRAUD_PARTITIONS_START", "2026-01-01"),
            automation_running=_env("FRAUD_AUTOMATION_DEFAULT_STATUS", "running").lower() != "stopped",
        )


class IngestionSettings(BaseModel):
    """How landing treats edge-case records (see docs/security.md and the README's bad-input section)."""

    accept_zero_amount: bool = Field(True, description="Zero amounts are account verifications, not errors")
    dedupe_window_days: int = Field(7, ge=1, description="Days a landed id is remembered across event dates")
    dlq_max_message_bytes: int = Field(1_000_000, ge=16_384, description="Dead letters above this are truncated (broker limit)")

    @classmethod
    def from_env(cls) -> "IngestionSettings":
        return cls(
            accept_zero_amount=_env("FRAUD_ACCEPT_ZERO_AMOUNT", "true").lower() in ("1", "true", "yes"),
            dedupe_window_days=int(_env("FRAUD_DEDUPE_WINDOW_DAYS", "7")),
            dlq_max_message_bytes=int(_env("FRAUD_DLQ_MAX_MESSAGE_BYTES", "1000000")),
        )


def _tokenisation_key() -> str:
    from fraud_platform.security import tokenisation_key

    return tokenisation_key()


class OnlineStoreSettings(BaseModel):
    """The online feature store (Redis): ``FRAUD_ONLINE_STORE_URL`` (``redis://``, ``rediss://``, a
    password in the URL or ``FRAUD_ONLINE_STORE_PASSWORD``) or, when unset, the embedded server
    the project started (``fraud-platform online-store start``)."""

    url: SecretStr | None = None
    password: SecretStr | None = None
    key_prefix: str = Field("fraud:", description="Every key starts with this, so several platforms share one server")
    dedupe_ttl_seconds: int = Field(7 * 86_400, gt=0, description="How long a transaction id is remembered as seen")
    # Labels find their transaction's terminal and day through an index kept this long: the label
    # maturity horizon (FRAUD_LABEL_MATURITY_DAYS) plus two days of slack.
    tx_index_ttl_seconds: int = Field(9 * 86_400, gt=0)
    socket_timeout_seconds: float = Field(5.0, gt=0)

    @classmethod
    def from_env(cls) -> "OnlineStoreSettings":
        url, password = _env("FRAUD_ONLINE_STORE_URL"), _env("FRAUD_ONLINE_STORE_PASSWORD")
        maturity_days = LakeProcessingSettings.from_env().label_maturity_days  # the one maturity setting
        return cls(
            url=SecretStr(url) if url else None,
            password=SecretStr(password) if password else None,
            key_prefix=_env("FRAUD_ONLINE_STORE_PREFIX", "fraud:"),
            dedupe_ttl_seconds=int(_env("FRAUD_ONLINE_STORE_DEDUPE_TTL_SECONDS", str(7 * 86_400))),
            tx_index_ttl_seconds=int(_env("FRAUD_ONLINE_STORE_TX_INDEX_TTL_SECONDS", str((maturity_days + 2) * 86_400))),
            socket_timeout_seconds=float(_env("FRAUD_ONLINE_STORE_TIMEOUT_SECONDS", "5")),
        )

    def resolved_url(self) -> str:
        """Explicit URL, else the embedded server's; RuntimeError when neither exists."""
        if self.url is not None:
            return self.url.get_secret_value()
        from fraud_platform.infra.online_store_server import EmbeddedOnlineStore

        url = EmbeddedOnlineStore.default().running_url()
        if url is None:
            raise RuntimeError(
                "No online store configured: FRAUD_ONLINE_STORE_URL is unset and the embedded Redis is not "
                "running. Start it with `fraud-platform online-store start`."
            )
        return url


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
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings.from_env)
    orchestration: OrchestrationSettings = Field(default_factory=OrchestrationSettings.from_env)
    online_store: OnlineStoreSettings = Field(default_factory=OnlineStoreSettings.from_env)

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
            # From env; locally a generated per-home key, elsewhere a missing key stops the process.
            tokenisation_key=SecretStr(_tokenisation_key()),
            reporting_currency=_env("FRAUD_REPORTING_CURRENCY", "EUR"),
        )

    @cached_property
    def mlflow_artifact_root(self) -> str:
        return _env("MLFLOW_ARTIFACT_ROOT", (self.home / "mlflow" / "artifacts").as_uri())


class ApiSettings(BaseModel):
    """The decision API (``fraud-platform serve``): bind address, limits, keys and decision log.

    API keys are stored hashed: ``FRAUD_API_KEYS`` (or the file ``FRAUD_API_KEYS_FILE``, one entry
    per line) lists ``name:sha256-hex-of-key[:scope,scope]``; ``fraud-platform api-key`` makes one.
    The decision thresholds are the streaming scorer's (``FRAUD_STREAM_REVIEW_THRESHOLD`` /
    ``FRAUD_STREAM_BLOCK_THRESHOLD``), so the API and the stream decide alike.
    """

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    workers: int = Field(1, ge=1)
    api_keys: SecretStr | None = None
    api_keys_file: Path | None = None
    rate_limit_per_second: float = Field(2000.0, gt=0, description="Per key, shared by all worker processes (counted in the online store's Redis)")
    rate_limit_burst: int = Field(200, ge=1)
    max_body_bytes: int = Field(1_048_576, ge=1024)
    max_batch: int = Field(1000, ge=1, le=10_000)
    reasons: int = Field(3, ge=0, le=20, description="Top-k reasons per decision")
    model_alias: str = "champion"
    model_refresh_seconds: float = Field(30.0, gt=0)
    review_threshold: float | None = Field(None, ge=0, le=1, description="Overrides the champion's threshold tag")
    block_threshold: float = Field(0.9, ge=0, le=1)
    decisions_postgres_dsn: SecretStr | None = None
    decisions_table: str = Field("api_decisions", pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
    decisions_sqlite_path: Path

    @classmethod
    def from_env(cls) -> "ApiSettings":
        keys, keys_file = _env("FRAUD_API_KEYS"), _env("FRAUD_API_KEYS_FILE")
        dsn = _env("FRAUD_DECISIONS_POSTGRES_DSN") or _env("FRAUD_ALERTS_POSTGRES_DSN")
        review = _env("FRAUD_STREAM_REVIEW_THRESHOLD")
        return cls(
            host=_env("FRAUD_API_HOST", "127.0.0.1"),
            port=int(_env("FRAUD_API_PORT", "8080")),
            workers=int(_env("FRAUD_API_WORKERS", "1")),
            api_keys=SecretStr(keys) if keys else None,
            api_keys_file=Path(keys_file) if keys_file else None,
            rate_limit_per_second=float(_env("FRAUD_API_RATE_LIMIT_PER_SECOND", "2000")),
            rate_limit_burst=int(_env("FRAUD_API_RATE_LIMIT_BURST", "200")),
            max_body_bytes=int(_env("FRAUD_API_MAX_BODY_BYTES", "1048576")),
            max_batch=int(_env("FRAUD_API_MAX_BATCH", "1000")),
            reasons=int(_env("FRAUD_API_REASONS", "3")),
            model_alias=_env("FRAUD_API_MODEL_ALIAS", _env("FRAUD_STREAM_MODEL_ALIAS", "champion")),
            model_refresh_seconds=float(_env("FRAUD_API_MODEL_REFRESH_SECONDS", "30")),
            review_threshold=float(review) if review else None,
            block_threshold=float(_env("FRAUD_STREAM_BLOCK_THRESHOLD", "0.9")),
            decisions_postgres_dsn=SecretStr(dsn) if dsn else None,
            decisions_table=_env("FRAUD_DECISIONS_TABLE", "api_decisions"),
            decisions_sqlite_path=Path(_env("FRAUD_DECISIONS_SQLITE_PATH", str(platform_home() / "api" / "decisions.sqlite"))),
        )


class ImportSettings(BaseModel):
    """`fraud-platform import`: how much of a file may be rejected before the import fails."""

    max_rejected_share: float = Field(0.05, ge=0.0, le=1.0, description="Share of rows validation may reject; above it nothing is produced and the command exits non-zero")

    @classmethod
    def from_env(cls) -> "ImportSettings":
        return cls(max_rejected_share=float(_env("FRAUD_IMPORT_MAX_REJECTED_SHARE", "0.05")))


class ConsoleSettings(BaseModel):
    """The analyst console served by the decision API under ``/console``.

    ``FRAUD_CONSOLE_SESSION_SECRET`` signs session cookies (set it when several API workers serve
    the console; otherwise each process makes a random one). Verdicts are published as labels on
    the labels topic unless ``FRAUD_CONSOLE_PUBLISH_LABELS=false``; unpublished ones are retried.
    """

    session_secret: SecretStr | None = None
    session_hours: float = Field(12.0, gt=0)
    refresh_seconds: float = Field(5.0, gt=0, description="Alert queue live refresh period")
    publish_labels: bool = True
    label_retry_seconds: float = Field(30.0, gt=0)

    @classmethod
    def from_env(cls) -> "ConsoleSettings":
        secret = _env("FRAUD_CONSOLE_SESSION_SECRET")
        return cls(
            session_secret=SecretStr(secret) if secret else None,
            session_hours=float(_env("FRAUD_CONSOLE_SESSION_HOURS", "12")),
            refresh_seconds=float(_env("FRAUD_CONSOLE_REFRESH_SECONDS", "5")),
            publish_labels=_env("FRAUD_CONSOLE_PUBLISH_LABELS", "true").lower() not in ("0", "false", "no"),
            label_retry_seconds=float(_env("FRAUD_CONSOLE_LABEL_RETRY_SECONDS", "30")),
        )
