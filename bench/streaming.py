"""Streaming scorer benchmark: sustained throughput and end-to-end latency at fixed rates and at the
maximum rate, for the Spark job (``python -m spark_streaming``) and, on the same workload, a
plain-Python confluent-kafka consume -> score -> produce loop using the same scorer and sinks.

    .venv/bin/python bench/streaming.py [--duration 60] [--rates 1000,5000,max]

Everything is real and local: embedded broker, SQLite MLflow registry with an XGBoost champion
trained on simulated data, DuckDB alert store, local lake, Spark local[2]. Latency per transaction
= Kafka timestamp of its prediction - its event_time (stamped when the producer sends it).
Targets (2 cores): >= 20k tx/s sustained, >= 0.5x the plain loop, p99 <= 1 s at 5k tx/s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _machine import machine_line  # noqa: E402

MODEL_NAME = "fraud_detector_bench"
TICK = 0.05


def simulated_pool(days: int = 2) -> pd.DataFrame:
    from fraud_platform.domain.simulator import SimulationConfig, TransactionSimulator

    start = date.today() - timedelta(days=days + 1)
    sim = TransactionSimulator(SimulationConfig(start=start, days=days, n_customers=3000, n_terminals=5000))
    return pd.concat([sim.transactions_for_day(start + timedelta(days=d)) for d in range(days)], ignore_index=True)


def train_champion(pool: pd.DataFrame, tracking_uri: str, artifact_root: str) -> None:
    """XGBoost on the shared features of the simulated pool, registered and aliased ``champion``."""
    import mlflow
    from mlflow import MlflowClient
    from xgboost import XGBClassifier

    from fraud_platform.domain.features import FEATURE_COLUMNS, compute_batch_features
    from fraud_platform.domain.catalogue import derive_processed_rows
    from fraud_platform.ml.registry import publish_tags

    frame = derive_processed_rows(pool)
    X = compute_batch_features(frame)[FEATURE_COLUMNS]
    model = XGBClassifier(n_estimators=100, max_depth=5, n_jobs=1).fit(X, pool["is_fraud"].astype(int))
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri, tracking_uri)
    experiment = client.create_experiment("bench", artifact_location=artifact_root)
    with mlflow.start_run(experiment_id=experiment):
        mlflow.xgboost.log_model(model, name="model", registered_model_name=MODEL_NAME, pip_requirements=["xgboost"])
    tags = publish_tags({}, features=FEATURE_COLUMNS, threshold=0.5, snapshot_uri=None, snapshot_key=None,
                        snapshot_version=None, test_window="bench")
    for key, value in tags.items():
        client.set_model_version_tag(MODEL_NAME, "1", key, value)
    client.set_registered_model_alias(MODEL_NAME, "champion", "1")


class Producer:
    """Sends simulated transactions re-stamped with the send time, at a fixed rate or flat out."""

    def __init__(self, pool: pd.DataFrame, topic: str) -> None:
        from fraud_platform.infra.kafka import make_producer
        from fraud_platform.settings import KafkaSettings

        self.pool = pool.drop(columns=["is_fraud", "fraud_scenario"])
        self.topic = topic
        self.producer = make_producer(KafkaSettings.from_env(), **{"linger.ms": 5})

    def run(self, phase: str, rate: float | None, duration: float) -> int:
        from fraud_platform.domain.simulator import encode_transactions

        sent, start = 0, time.monotonic()
        chunk = int(rate * TICK) if rate else 5000
        while (now := time.monotonic()) - start < duration:
            if rate and sent >= rate * (now - start):
                time.sleep(TICK / 5)
                continue
            rows = self.pool.sample(chunk, replace=True, random_state=sent % 100000).reset_index(drop=True)
            rows["transaction_id"] = [f"{phase}-{sent + i:09d}" for i in range(chunk)]
            rows["event_time"] = pd.Timestamp(datetime.now(timezone.utc))
            for key, value in encode_transactions(rows):
                while True:
                    try:
                        self.producer.produce(self.topic, key=key, value=value)
                        break
                    except BufferError:
                        self.producer.poll(0.05)
            self.producer.poll(0)
            sent += chunk
        self.producer.flush(60)
        return sent

    def close(self) -> None:
        self.producer.close()  # before the broker stops, or the idle client keeps reconnecting


def collect(topic: str, phase: str, expected: int, positions: dict[int, int], timeout: float) -> list[tuple[float, float]]:
    """(event_time_ms, prediction_kafka_ts_ms) of the phase's predictions, waiting until all arrived."""
    from fraud_platform.infra.kafka import read_range
    from fraud_platform.settings import KafkaSettings

    settings = KafkaSettings.from_env()
    found: dict[str, tuple[float, float]] = {}
    deadline = time.monotonic() + timeout
    while len(found) < expected and time.monotonic() < deadline:
        for chunk, next_positions in read_range(settings, topic, positions, idle_timeout=1.0):
            for msg in chunk:
                p = json.loads(msg.value())
                if p["transaction_id"].startswith(phase + "-"):
                    event_ms = pd.Timestamp(p["event_time"]).value / 1e6
                    found[p["transaction_id"]] = (event_ms, float(msg.timestamp()[1]))
            positions.update(next_positions)
        time.sleep(0.5)
    return list(found.values())


def phase_stats(name: str, rate: str, sent: int, pairs: list[tuple[float, float]], produce_seconds: float) -> dict:
    if not pairs:
        return {"scorer": name, "rate": rate, "sent": sent, "scored": 0}
    events, predicted = np.array(pairs).T
    latency = (predicted - events) / 1000.0
    span = (predicted.max() - events.min()) / 1000.0
    return {
        "scorer": name, "rate": rate, "sent": sent, "scored": len(pairs), "offered/s": sent / produce_seconds,
        "throughput/s": len(pairs) / span, "p50_s": np.percentile(latency, 50), "p95_s": np.percentile(latency, 95),
        "p99_s": np.percentile(latency, 99),
    }


def plain_worker() -> None:
    """The reference: confluent-kafka assign/consume -> the same BatchHandler -> same sinks, no Spark."""
    from confluent_kafka import KafkaError, TopicPartition

    from fraud_platform.infra.kafka import make_consumer, topic_partitions
    from spark_streaming.config import StreamConfig
    from spark_streaming.job import BatchHandler, build_components, settle_heap
    from spark_streaming.source import messages_to_batch

    import pyarrow as pa

    config = StreamConfig.load()
    parts = build_components(config)
    handler = BatchHandler(parts)
    settle_heap()
    kafka = config.platform.kafka
    topic = kafka.topics.transactions
    consumer = make_consumer(kafka, "bench-plain", **{"fetch.wait.max.ms": 50})
    consumer.assign([TopicPartition(topic, p, 0) for p in topic_partitions(kafka, topic)])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    batch_id = 0
    while not stop.is_set():
        msgs = [m for m in consumer.consume(50000, timeout=0.2) if m.error() is None or m.error().code() != KafkaError._PARTITION_EOF]
        if msgs:
            handler.process(pa.Table.from_batches([messages_to_batch(msgs)]), batch_id)
            batch_id += 1
    consumer.close()
    parts.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per rate (default 60)")
    parser.add_argument("--rates", default="1000,5000,max")
    parser.add_argument("--scorers", default="spark,plain")
    parser.add_argument("--trigger-seconds", type=float, default=0.0, help="0: next micro-batch as soon as one ends")
    parser.add_argument("--max-offered", type=float, default=40000.0, help="send rate of the 'max' phase (above the scorer's capacity)")
    parser.add_argument("--plain-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_worker:
        plain_worker()
        return

    home = Path(tempfile.mkdtemp(prefix="fraud-bench-"))
    os.environ.update({
        "FRAUD_PLATFORM_HOME": str(home), "FRAUD_STREAM_METRICS_PORT": "0", "FRAUD_MODEL_NAME": MODEL_NAME,
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}", "MLFLOW_REGISTRY_URI": f"sqlite:///{home / 'mlflow.db'}",
        "FRAUD_TOPIC_PARTITIONS": "2", "FRAUD_SPARK_MASTER": "local[2]",
    })
    from fraud_platform.infra.broker import EmbeddedBroker
    from fraud_platform.infra.kafka import ensure_topics
    from fraud_platform.settings import KafkaSettings

    broker = EmbeddedBroker.default()
    broker.start()
    results = []
    try:
        pool = simulated_pool()
        train_champion(pool, os.environ["MLFLOW_TRACKING_URI"], (home / "artifacts").as_uri())
        rates = [None if r == "max" else float(r) for r in args.rates.split(",")]
        for name in args.scorers.split(","):
            env_topics = {
                "FRAUD_TOPIC_TRANSACTIONS": f"tx-{name}", "FRAUD_TOPIC_TRANSACTIONS_DLQ": f"tx-{name}.dlq",
                "FRAUD_TOPIC_PREDICTIONS": f"pred-{name}", "FRAUD_LAKE_ROOT": str(home / f"lake-{name}"),
                "FRAUD_STREAM_ALERTS_DUCKDB_PATH": str(home / f"alerts-{name}.duckdb"),
                "FRAUD_STREAM_CHECKPOINT": str(home / f"checkpoint-{name}"),
            }
            os.environ.update(env_topics)
            ensure_topics(KafkaSettings.from_env(), [env_topics["FRAUD_TOPIC_TRANSACTIONS"], env_topics["FRAUD_TOPIC_PREDICTIONS"]], partitions=2)
            command = ([sys.executable, "-m", "spark_streaming", "--trigger-seconds", str(args.trigger_seconds)] if name == "spark"
                       else [sys.executable, str(Path(__file__).resolve()), "--plain-worker"])
            log = open(home / f"{name}.log", "wb")
            worker = subprocess.Popen(command, env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            producer = Producer(pool, env_topics["FRAUD_TOPIC_TRANSACTIONS"])
            positions = {0: 0, 1: 0}
            try:
                warm = producer.run(f"warm{name}", 1000, 3)
                if len(collect(env_topics["FRAUD_TOPIC_PREDICTIONS"], f"warm{name}", warm, positions, 300)) < warm:
                    raise RuntimeError(f"{name} scorer did not warm up; see {home / (name + '.log')}")
                for i, rate in enumerate(rates):
                    phase = f"{name}{i}"
                    started = time.monotonic()
                    sent = producer.run(phase, rate or args.max_offered, args.duration)
                    produce_seconds = time.monotonic() - started
                    pairs = collect(env_topics["FRAUD_TOPIC_PREDICTIONS"], phase, sent, positions, 600)
                    results.append(phase_stats(name, "max" if rate is None else f"{rate:.0f}", sent, pairs, produce_seconds))
                    print(results[-1], flush=True)
            finally:
                producer.close()
                worker.send_signal(signal.SIGTERM)  # the scorer only: it stops its Spark workers itself
                try:
                    worker.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(worker.pid, signal.SIGKILL)
    finally:
        broker.stop()

    table = pd.DataFrame(results)
    print(f"\nStreaming scorer benchmark — {machine_line()}; {args.duration:.0f}s per rate, trigger {args.trigger_seconds}s, 2 partitions")
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.3f}" if v < 100 else f"{v:,.0f}"))
    spark_max = table[(table.scorer == "spark") & (table.rate == "max")]
    plain_max = table[(table.scorer == "plain") & (table.rate == "max")]
    if len(spark_max) and len(plain_max):
        ratio = spark_max["throughput/s"].iloc[0] / plain_max["throughput/s"].iloc[0]
        print(f"spark / plain throughput at max rate: {ratio:.2f}x")


if __name__ == "__main__":
    main()
