"""Real parts for the streaming tests: the embedded broker, a SQLite MLflow registry holding small
real models, a throwaway PostgreSQL database, and per-test topics/lake/checkpoint via env vars."""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraud_platform.domain.features import FEATURE_COLUMNS

PG_ADMIN_DSN = os.environ.get("FRAUD_TEST_POSTGRES_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
MODEL_NAME = "fraud_detector_stream_test"


@pytest.fixture()
def stream_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broker, online_store_url) -> dict[str, str]:
    """Unique topics, lake, checkpoint, DuckDB file, decision log and online-store key prefix for one test (env vars)."""
    suffix = uuid.uuid4().hex[:8]
    env = {
        "FRAUD_TOPIC_TRANSACTIONS": f"tx-{suffix}",
        "FRAUD_TOPIC_TRANSACTIONS_DLQ": f"tx-{suffix}.dlq",
        "FRAUD_TOPIC_PREDICTIONS": f"pred-{suffix}",
        "FRAUD_TOPIC_PARTITIONS": "2",
        "FRAUD_LAKE_ROOT": str(tmp_path / "lake"),
        "FRAUD_STREAM_CHECKPOINT": str(tmp_path / "checkpoint"),
        "FRAUD_STREAM_ALERTS_DUCKDB_PATH": str(tmp_path / "alerts.duckdb"),
        "FRAUD_DECISIONS_SQLITE_PATH": str(tmp_path / "decisions.sqlite"),
        "FRAUD_STREAM_METRICS_PORT": "0",
        "FRAUD_STREAM_BLOCK_THRESHOLD": "0.9",
        "FRAUD_STREAM_REVIEW_THRESHOLD": "0.5",
        "FRAUD_MODEL_NAME": MODEL_NAME,
        "FRAUD_ONLINE_STORE_URL": online_store_url,
        "FRAUD_ONLINE_STORE_PREFIX": f"stream-{suffix}:",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("FRAUD_ALERTS_POSTGRES_DSN", raising=False)
    monkeypatch.delenv("FRAUD_DECISIONS_POSTGRES_DSN", raising=False)
    from fraud_platform.infra.kafka import ensure_topics
    from fraud_platform.settings import KafkaSettings

    ensure_topics(KafkaSettings.from_env(), [env["FRAUD_TOPIC_TRANSACTIONS"], env["FRAUD_TOPIC_TRANSACTIONS_DLQ"], env["FRAUD_TOPIC_PREDICTIONS"]])
    return env


# -- a real MLflow registry with two real models ------------------------------------------------
def _training_frame(n: int = 3000) -> tuple[pd.DataFrame, np.ndarray]:
    """Shared-module features of synthetic history; label = FDH scenario 1 (amount > 220 EUR)."""
    from fraud_platform.domain.features import compute_batch_features
    from fraud_platform.domain.hashing import entity_key

    start = datetime.now(timezone.utc) - timedelta(days=20)
    txs = pd.DataFrame([transaction(i, when=start + timedelta(minutes=9 * i)) for i in range(n)])
    txs["amount"] = np.where(np.arange(n) % 10 == 0, 950.0, txs["amount"])
    frame = pd.DataFrame({
        "transaction_id": txs["transaction_id"], "customer_key": txs["customer_id"].map(entity_key),
        "terminal_id": txs["terminal_id"], "amount_eur": txs["amount"], "event_time": pd.to_datetime(txs["event_time"], utc=True),
    })
    X = compute_batch_features(frame)[FEATURE_COLUMNS]
    return X, (X["amount_eur"] > 220).astype(int).to_numpy()


class Registry:
    """SQLite MLflow registry with version 1 (logistic regression) and 2 (xgboost) of one model."""

    def __init__(self, root: Path) -> None:
        import mlflow
        from mlflow import MlflowClient

        self.tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
        self.artifact_root = (root / "artifacts").as_uri()
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        self.client = MlflowClient(self.tracking_uri, self.tracking_uri)
        experiment = self.client.create_experiment("stream-tests", artifact_location=self.artifact_root)
        X, y = _training_frame()
        from sklearn.linear_model import LogisticRegression
        from xgboost import XGBClassifier

        models = [
            ("sklearn", LogisticRegression(max_iter=500).fit(X, y)),
            ("xgboost", XGBClassifier(n_estimators=20, max_depth=3).fit(X, y)),
        ]
        for flavor, model in models:
            with mlflow.start_run(experiment_id=experiment):
                getattr(mlflow, flavor).log_model(model, name="model", registered_model_name=MODEL_NAME, pip_requirements=[flavor])
        from fraud_platform.ml.registry import publish_tags

        tags = publish_tags({}, features=FEATURE_COLUMNS, threshold=0.5, test_window="synthetic")
        for version in ("1", "2"):
            for key, value in tags.items():
                self.client.set_model_version_tag(MODEL_NAME, version, key, value)
        self.promote("1")

    def promote(self, version: str) -> None:
        self.client.set_registered_model_alias(MODEL_NAME, "champion", version)


@pytest.fixture(scope="session")
def registry(tmp_path_factory) -> Registry:
    return Registry(tmp_path_factory.mktemp("mlflow"))


@pytest.fixture()
def registry_env(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> Registry:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.tracking_uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", registry.tracking_uri)
    registry.promote("1")
    return registry


# -- PostgreSQL -----------------------------------------------------------------------------------
@pytest.fixture()
def pg_dsn():
    """A throwaway database on the local server, dropped afterwards."""
    import psycopg

    name = f"fraud_stream_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# -- transactions -----------------------------------------------------------------------------------
def wait_for(condition, what: str, timeout: float = 120.0) -> None:
    """Poll until ``condition()``; a generous deadline only guards against hangs (not a speed check)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


def transaction(i: int, amount: float | None = None, when: datetime | None = None, prefix: str = "tx") -> dict:
    rng = random.Random(i)
    return {
        "transaction_id": f"{prefix}-{i:08d}",
        "event_time": (when or datetime.now(timezone.utc) - timedelta(minutes=5)).isoformat().replace("+00:00", "Z"),
        "customer_id": f"cust-{i % 50}",
        "card_token": f"tok_{i % 50:032x}",
        "terminal_id": f"term-{i % 20}",
        "amount": amount if amount is not None else round(rng.uniform(5, 400), 2),
        "currency": "EUR",
        "merchant_category": "5411",
        "channel": "ecommerce",
        "country": "FR",
    }


def invalid_records() -> list[tuple[bytes, str, str | None]]:
    """(value, expected rule, expected field) for records the validator must refuse."""
    bad_currency = dict(transaction(900001), currency="XXX")
    negative = dict(transaction(900002), amount=-5.0)
    pan = dict(transaction(900003), card_token="4111111111111111")
    missing = transaction(900004)
    del missing["terminal_id"]
    return [
        (b"{not json", "malformed_json", None),
        (json.dumps(bad_currency).encode(), "unknown_currency", "currency"),
        (json.dumps(negative).encode(), "non_positive_amount", "amount"),
        (json.dumps(pan).encode(), "raw_pan", "card_token"),
        (json.dumps(missing).encode(), "missing_field", "terminal_id"),
    ]


def produce(records: list[tuple[bytes | None, bytes]], topic: str | None = None, partitions: int = 2) -> None:
    from fraud_platform.infra.kafka import make_producer
    from fraud_platform.settings import KafkaSettings

    settings = KafkaSettings.from_env()
    producer = make_producer(settings)
    for n, (key, value) in enumerate(records):
        producer.produce(topic or settings.topics.transactions, key=key, value=value, partition=n % partitions)
        if n % 10000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0
    producer.close()


def produce_transactions(txs: list[dict], **kwargs) -> None:
    produce([(t["card_token"].encode(), json.dumps(t).encode()) for t in txs], **kwargs)


def consume_all(topic: str, partitions: int = 2) -> list:
    """Every message of ``topic`` (read to partition-EOF)."""
    from fraud_platform.infra.kafka import read_range
    from fraud_platform.settings import KafkaSettings

    out = []
    for chunk, _ in read_range(KafkaSettings.from_env(), topic, {p: 0 for p in range(partitions)}, idle_timeout=3):
        out.extend(chunk)
    return out
