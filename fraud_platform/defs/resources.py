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

from fraud_platform.infra.lake import LakeStore, lake_store_from_settings
from fraud_platform.settings import KafkaSettings, LakeSettings, PlatformSettings, TopicNames


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


def platform_environment() -> str:
    return os.environ.get("FRAUD_PLATFORM_ENV", "local")


def build_resources(settings: PlatformSettings | None = None) -> dict[str, object]:
    """Resources for the current environment. Every environment reads the same typed settings;
    what differs is where the env vars point (embedded defaults vs. the compose services)."""
    settings = settings or PlatformSettings.from_env()
    kafka = settings.kafka
    resources: dict[str, object] = {
        "lake": LakeResource.from_settings(settings.lake),
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
