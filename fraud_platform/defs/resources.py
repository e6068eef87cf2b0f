"""Resources, chosen per environment in this one place.

``FRAUD_PLATFORM_ENV=local`` (default) uses the embedded defaults: local lake folder, embedded
broker, SQLite MLflow, DuckDB. ``FRAUD_PLATFORM_ENV=docker`` (the docker-compose stack) takes the
service addresses from env vars (see ``.env.example``). Secrets are only ever read from env vars.
"""

from __future__ import annotations

import os
from typing import Optional

import dagster as dg
from dagster_aws.s3 import S3Resource
from dagster_dbt import DbtCliResource

from fraud_platform.infra.lake import LakeStore, lake_store_from_settings
from fraud_platform.ml.tracking import TrackingTarget
from fraud_platform.settings import KafkaSettings, LakeSettings, PlatformSettings, SparkSettings, TopicNames, MonitoringSettings
from fraud_platform.settings import WarehouseSettings
from fraud_platform import warehouse as wh


class LakeResource(dg.ConfigurableResource):
    """The lake: a local folder by default, or an S3/MinIO bucket through dagster-aws."""

    backend: str = "local"
    root: str
    bucket: Optional[str] = None
    s3_endpoint_url: Optional[str] = None
    s3_region: str = "us-east-1"

    @classmethod
    def from_settings(cls, settings: LakeSettings) -> "LakeResource":
        return cls(**settings.model_dump())

    def settings(self) -> LakeSettings:
        return LakeSettings(**self.model_dump())

    def store(self) -> LakeStore:
        client = None
        if self.backend == "s3":
            client = S3Resource(endpoint_url=self.s3_endpoint_url, region_name=self.s3_region).get_client()
        return lake_store_from_settings(self.settings(), s3_client=client)


class KafkaResource(dg.ConfigurableResource):
    """Kafka connection (embedded broker by default); builds the one shared ``KafkaSettings``."""

    bootstrap_servers: Optional[str] = None
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: Optional[str] = None
    sasl_username: Optional[str] = None
    sasl_password: Optional[str] = None
    topics: dict = {}

    def settings(self) -> KafkaSettings:
        return KafkaSettings(
            bootstrap_servers=self.bootstrap_servers,
            security_protocol=self.security_protocol,
            sasl_mechanism=self.sasl_mechanism,
            sasl_username=self.sasl_username,
            sasl_password=self.sasl_password,
            topics=TopicNames(**self.topics) if self.topics else TopicNames.from_env(),
        )


class SparkResource(dg.ConfigurableResource):
    """The batch Spark session. ``getOrCreate`` makes it one session per process (per run with the
    in-process executor), shared by every Spark asset instead of one JVM per asset."""

    master: str = "local[*]"
    shuffle_partitions: int = 4
    ui_enabled: bool = False
    driver_memory: str = "2g"
    python_executable: Optional[str] = None  # workers' interpreter; default: this process's venv python
    app_name: str = "fraud-platform"

    @classmethod
    def from_settings(cls, settings: SparkSettings) -> "SparkResource":
        return cls(**settings.model_dump())

    def session(self):
        import sys

        from fraud_platform.infra.spark import build_spark_session

        os.environ["PYSPARK_PYTHON"] = self.python_executable or sys.executable
        os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
        conf = {
            "spark.sql.shuffle.partitions": str(self.shuffle_partitions),
            "spark.default.parallelism": str(self.shuffle_partitions),
            "spark.ui.enabled": str(self.ui_enabled).lower(),
            "spark.driver.memory": self.driver_memory,
            "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
            "spark.ui.showConsoleProgress": "false",
        }
        return build_spark_session(self.app_name, master=self.master, conf=conf)


class WarehouseDbtResource(DbtCliResource):
    """dbt CLI for the warehouse project (dbt/). Every dbt subprocess gets the platform's resolved
    settings as the env vars profiles.yml reads, so dbt and Python always agree on the DuckDB file,
    the lake root and the Postgres server. Field names ``pg_*`` mirror ``WarehouseSettings``."""

    duckdb_path: str
    lake_root_uri: str
    pg_host: str = "127.0.0.1"
    pg_port: int = 5432
    pg_user: str = "postgres"
    pg_password: Optional[str] = None
    pg_database: str = "fraud"
    pg_schema: str = "analytics"
    pg_source_schema: str = "lake"

    @classmethod
    def from_settings(cls, settings: PlatformSettings) -> "WarehouseDbtResource":
        pg = settings.warehouse.model_dump(exclude={"target", "pg_password"})
        return cls(
            project_dir=str(wh.DBT_PROJECT_DIR),
            dbt_executable=wh.dbt_executable(),
            target=settings.warehouse.target,
            duckdb_path=str(settings.duckdb_path),
            lake_root_uri=wh.lake_uri(settings.lake),
            pg_password=dg.EnvVar("FRAUD_WAREHOUSE_PG_PASSWORD") if settings.warehouse.pg_password else None,
            **pg,
        )

    def warehouse(self) -> WarehouseSettings:
        fields = {k: v for k, v in self.model_dump().items() if k in WarehouseSettings.model_fields}
        return WarehouseSettings(**{**fields, "target": self.target or "duckdb"})

    def cli(self, args, **kwargs):  # type: ignore[override]
        with wh.patched_environ(wh.dbt_env(self.warehouse(), self.duckdb_path, self.lake_root_uri)):
            return super().cli(args, **kwargs)

    def write_lock(self, on_wait=None):
        """DuckDB's single-writer lock (a no-op context for the Postgres target)."""
        from contextlib import nullcontext

        return wh.duckdb_write_lock(self.duckdb_path, on_wait) if self.warehouse().target == "duckdb" else nullcontext()

    def read_relation(self, name: str):
        return wh.read_relation(name, self.warehouse(), self.duckdb_path)


class MlflowResource(dg.ConfigurableResource):
    """MLflow tracking + model registry (SQLite under FRAUD_PLATFORM_HOME by default); the
    experiment's artifact location is pinned to ``artifact_root``."""

    tracking_uri: str
    artifact_root: str
    registry_uri: Optional[str] = None
    experiment_name: str = "fraud_detection"
    model_name: str = "fraud_detector"

    @classmethod
    def from_settings(cls, settings: PlatformSettings) -> "MlflowResource":
        return cls(tracking_uri=settings.mlflow_tracking_uri, artifact_root=settings.mlflow_artifact_root,
                   registry_uri=settings.mlflow_registry_uri, model_name=settings.model_name)

    def target(self) -> TrackingTarget:
        return TrackingTarget(self.tracking_uri, self.artifact_root, self.registry_uri, self.experiment_name,
                              self.model_name)


class MonitoringResource(dg.ConfigurableResource):
    """Thresholds the drift and live-performance sensors act on (FRAUD_DRIFT_PSI_THRESHOLD, …)."""

    recent_days: int = 7
    psi_threshold: float = 0.25
    min_live_ap: float = 0.5
    label_maturity_days: int = 7

    @classmethod
    def from_settings(cls) -> "MonitoringResource":
        return cls(**MonitoringSettings.from_env().model_dump())


class OnlineStoreResource(dg.ConfigurableResource):
    """The online feature store (Redis): FRAUD_ONLINE_STORE_URL or the embedded server."""

    url: Optional[str] = None
    password: Optional[str] = None
    key_prefix: str = "fraud:"
    dedupe_ttl_seconds: int = 7 * 86_400
    tx_index_ttl_seconds: int = 9 * 86_400

    @classmethod
    def from_settings(cls, settings: PlatformSettings) -> "OnlineStoreResource":
        online = settings.online_store
        return cls(
            url=dg.EnvVar("FRAUD_ONLINE_STORE_URL") if online.url else None,
            password=dg.EnvVar("FRAUD_ONLINE_STORE_PASSWORD") if online.password else None,
            key_prefix=online.key_prefix, dedupe_ttl_seconds=online.dedupe_ttl_seconds,
            tx_index_ttl_seconds=online.tx_index_ttl_seconds,
        )

    def store(self):
        from fraud_platform.infra.online_store import OnlineFeatureStore
        from fraud_platform.settings import OnlineStoreSettings

        return OnlineFeatureStore.from_settings(OnlineStoreSettings(**self.model_dump()))


def platform_environment() -> str:
    return os.environ.get("FRAUD_PLATFORM_ENV", "local")


def build_executor() -> dg.ExecutorDefinition:
    """In-process locally: one process (and one Spark session) per run, no per-step interpreter
    start-up on a 2-core laptop. The docker deployment runs steps in parallel processes."""
    return dg.multiprocess_executor if platform_environment() == "docker" else dg.in_process_executor


def build_resources(settings: PlatformSettings | None = None) -> dict[str, object]:
    """Resources for the current environment. Every environment reads the same typed settings;
    what differs is where the env vars point (embedded defaults vs. the compose services)."""
    settings = settings or PlatformSettings.from_env()
    kafka = settings.kafka
    resources: dict[str, object] = {
        "lake": LakeResource.from_settings(settings.lake),
        "dbt": WarehouseDbtResource.from_settings(settings),
        "spark": SparkResource.from_settings(settings.spark),
        "mlflow": MlflowResource.from_settings(settings),
        "monitoring": MonitoringResource.from_settings(),
        "online_store": OnlineStoreResource.from_settings(settings),
        "kafka": KafkaResource(
            bootstrap_servers=kafka.bootstrap_servers,
            security_protocol=kafka.security_protocol,
            sasl_mechanism=kafka.sasl_mechanism,
            sasl_username=kafka.sasl_username,
            sasl_password=dg.EnvVar("FRAUD_KAFKA_SASL_PASSWORD") if kafka.sasl_password else None,
            topics=kafka.topics.model_dump(),
        ),
    }
    return resources
