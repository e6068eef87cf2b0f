"""Resources, chosen per environment in this one place.

``FRAUD_PLATFORM_ENV=local`` (default) uses the embedded defaults: local lake folder, embedded
broker, SQLite MLflow, DuckDB. ``FRAUD_PLATFORM_ENV=docker`` (the docker-compose stack) takes the
service addresses from env vars (see ``.env.example``). Secrets are only ever read from env vars.

One configuration path: a resource *is* its typed settings class (``LakeResource`` subclasses both
``ConfigurableResource`` and ``LakeSettings``, ``KafkaResource`` is a ``KafkaSettings``, …), so the
fields, defaults and validation are the ones in ``fraud_platform.settings``; nothing here re-declares
a field or converts back and forth. ``resource_config`` hands a settings object over as is, secrets
as ``dg.EnvVar``.
"""

from __future__ import annotations

import os
from typing import Optional

import dagster as dg
from dagster_aws.s3 import S3Resource
from dagster_dbt import DbtCliResource
from pydantic import BaseModel, Field

from fraud_platform import warehouse as wh
from fraud_platform.infra.lake import LakeStore, lake_store_from_settings
from fraud_platform.ml.tracking import TrackingTarget
from fraud_platform.processing.maturity import MaturityPolicy
from fraud_platform.quality.suites import QualityBounds
from fraud_platform.settings import KafkaSettings, LakeProcessingSettings, LakeSettings, MonitoringSettings, OnlineStoreSettings
from fraud_platform.settings import OrchestrationSettings, PlatformSettings, SparkSettings, TopicNames, WarehouseSettings, secret_env


class LakeResource(dg.ConfigurableResource, LakeSettings):
    """The lake: a local folder by default, or an S3/MinIO bucket through dagster-aws."""

    def store(self) -> LakeStore:
        client = None
        if self.backend == "s3":
            client = S3Resource(endpoint_url=self.s3_endpoint_url, region_name=self.s3_region).get_client()
        return lake_store_from_settings(self, s3_client=client)


class TopicNamesConfig(dg.Config, TopicNames):
    """``TopicNames`` as Dagster config: Dagster holds a nested model only if it is a ``dg.Config``."""


class KafkaResource(dg.ConfigurableResource, KafkaSettings):
    """Kafka connection (embedded broker by default): the resource is the ``KafkaSettings``."""

    topics: TopicNamesConfig = Field(default_factory=TopicNamesConfig)


class SparkResource(dg.ConfigurableResource, SparkSettings):
    """The batch Spark session. ``getOrCreate`` makes it one session per process (per run with the
    in-process executor), shared by every Spark asset instead of one JVM per asset."""

    python_executable: Optional[str] = None  # workers' interpreter; default: this process's venv python
    app_name: str = "fraud-platform"

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


class LakeProcessingResource(dg.ConfigurableResource, LakeProcessingSettings):
    """Label maturity and quality bounds, as the lake assets, checks and the lake sensor read them."""

    def policy(self) -> MaturityPolicy:
        return MaturityPolicy(self.label_maturity_days, self.maturity_reference)

    def bounds(self) -> QualityBounds:
        return QualityBounds(self.fraud_rate_min, self.fraud_rate_max, self.row_count_tolerance)


class WarehouseDbtResource(DbtCliResource, WarehouseSettings):
    """dbt CLI for the warehouse project (dbt/), holding the ``WarehouseSettings``. Every dbt
    subprocess gets them as the env vars profiles.yml reads, so dbt and Python always agree on the
    DuckDB file, the lake root and the Postgres server. ``target`` (dbt's target name) is
    ``WarehouseSettings.target``."""

    lake_root_uri: str = Field(description="The lake root as dbt's sources read it (fraud_platform.warehouse.lake_uri)")

    def cli(self, args, **kwargs):  # type: ignore[override]
        with wh.patched_environ(wh.dbt_env(self, self.lake_root_uri)):
            return super().cli(args, **kwargs)

    def write_lock(self, on_wait=None):
        """DuckDB's single-writer lock (a no-op context for the Postgres target)."""
        from contextlib import nullcontext

        return wh.duckdb_write_lock(self.duckdb_path, on_wait) if self.target == "duckdb" else nullcontext()

    def read_relation(self, name: str):
        return wh.read_relation(name, self)


class MlflowResource(dg.ConfigurableResource, TrackingTarget):
    """MLflow tracking + model registry: the ``MlflowSettings`` with ``activate()`` and ``client()``."""


class MonitoringResource(dg.ConfigurableResource, MonitoringSettings):
    """Thresholds the drift and live-performance sensors act on (FRAUD_DRIFT_PSI_THRESHOLD, …)."""


class OnlineStoreResource(dg.ConfigurableResource, OnlineStoreSettings):
    """The online feature store (Redis): FRAUD_ONLINE_STORE_URL or the embedded server."""

    def store(self):
        from fraud_platform.infra.online_store import OnlineFeatureStore

        return OnlineFeatureStore.from_settings(self)


def platform_environment() -> str:
    return OrchestrationSettings.from_env().environment


def build_executor() -> dg.ExecutorDefinition:
    """In-process locally: one process (and one Spark session) per run, no per-step interpreter
    start-up on a 2-core laptop. The docker deployment runs steps in parallel processes."""
    return dg.multiprocess_executor if platform_environment() == "docker" else dg.in_process_executor


def resource_config(settings: BaseModel) -> dict[str, object]:
    """A settings object's fields as the config of the resource that subclasses its class. A secret
    goes as ``dg.EnvVar`` of the variable it was read from, so Dagster resolves it at run time and
    its value never enters the definitions, run storage or the UI; a nested model goes as its dict."""
    config: dict[str, object] = {}
    for name, field in type(settings).model_fields.items():
        value, env = getattr(settings, name), secret_env(field)
        config[name] = dg.EnvVar(env) if env and value is not None else value.model_dump() if isinstance(value, BaseModel) else value
    return config


def build_resources(settings: PlatformSettings | None = None) -> dict[str, object]:
    """Resources for the current environment. Every environment reads the same typed settings;
    what differs is where the env vars point (embedded defaults vs. the compose services)."""
    settings = settings or PlatformSettings.from_env()
    return {
        "lake": LakeResource(**resource_config(settings.lake)),
        "lake_processing": LakeProcessingResource(**resource_config(settings.lake_processing)),
        "dbt": WarehouseDbtResource(project_dir=str(wh.DBT_PROJECT_DIR), dbt_executable=wh.dbt_executable(),
                                    lake_root_uri=wh.lake_uri(settings.lake), **resource_config(settings.warehouse)),
        "spark": SparkResource(**resource_config(settings.spark)),
        "mlflow": MlflowResource(**resource_config(settings.mlflow)),
        "monitoring": MonitoringResource(**resource_config(settings.monitoring)),
        "kafka": KafkaResource(**resource_config(settings.kafka)),
        "online_store": OnlineStoreResource(**resource_config(settings.online_store)),
    }
