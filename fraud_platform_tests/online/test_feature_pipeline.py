"""The streaming feature pipeline (``python -m spark_streaming features``) with a real broker, real
Redis and real Spark: labels reach online features, a kill -9 and restart leaves the store as a
clean run leaves it, and an unreachable store stops it at start-up with its own exit code."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraud_platform.domain.features import FEATURE_COLUMNS, US_PER_DAY, compute_batch_features
from fraud_platform.domain.simulator import SimulationConfig, TransactionSimulator, encode_labels, encode_transactions
from fraud_platform.infra.kafka import make_producer
from fraud_platform.infra.online_store import OnlineFeatureStore, decode_history
from fraud_platform.ml.datasets import simulated_sandbox_frame

EVENT_COLUMNS = ["transaction_id", "event_time", "customer_key", "terminal_id", "amount_eur"]
HISTORY_DAYS = 33


@pytest.fixture(scope="module")
def simulation() -> TransactionSimulator:
    return TransactionSimulator(SimulationConfig(
        start=date(2026, 3, 1), days=HISTORY_DAYS + 1, n_customers=120, n_terminals=250, seed=11, fraud_rate=0.05,
        label_delay_days=4,
    ))


@pytest.fixture(scope="module")
def frame(simulation) -> pd.DataFrame:
    return simulated_sandbox_frame(simulation)


def _produce(settings, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = make_producer(settings)
    for key, value in messages:
        producer.produce(topic, value=value, key=key)
        producer.poll(0)
    assert producer.flush(30) == 0


def _history_messages(simulation: TransactionSimulator, days: int = HISTORY_DAYS) -> list[tuple[bytes, bytes]]:
    return [m for day in simulation.days()[:days] for m in encode_transactions(simulation.transactions_for_day(day))]


def _labels(simulation: TransactionSimulator, cutoff: pd.Timestamp) -> pd.DataFrame:
    labels = simulation.labels_for_window(simulation.config.start, cutoff.to_pydatetime())
    return labels[labels["known_at"] < cutoff]


def _config(tmp_path: Path, **overrides):
    from spark_streaming.feature_pipeline import load_config, parse_args

    args = parse_args(["--checkpoint", str(tmp_path / "features-checkpoint"), "--available-now", "--trigger-seconds", "0"])
    config = load_config(args)
    return config.model_copy(update=overrides)


@pytest.mark.slow
def test_labels_reach_online_features(kafka_settings, online_store: OnlineFeatureStore, spark, simulation, frame, tmp_path):
    from spark_streaming.feature_pipeline import run

    topics = kafka_settings.topics
    first_day = pd.Timestamp(simulation.config.start, tz="UTC")
    cutoff = first_day + pd.Timedelta(days=HISTORY_DAYS)
    # 1. transactions; 2. the labels known by the cutoff; 3. later transactions are looked up.
    _produce(kafka_settings, topics.transactions, _history_messages(simulation))
    config = _config(tmp_path)
    first = run(config, store=online_store, spark=spark)
    assert first.totals[topics.transactions][2] == int((frame["event_time"] < cutoff).sum())
    without_labels = online_store.state_version()

    labels = _labels(simulation, cutoff)
    _produce(kafka_settings, topics.labels, encode_labels(labels))
    second = run(config, store=online_store, spark=spark)
    assert topics.transactions not in second.totals  # the checkpoint resumed after the transactions
    assert online_store.state_version() != without_labels

    later = frame[(frame["event_time"] >= cutoff) & (frame["event_time"] < cutoff + pd.Timedelta(hours=20))]
    history = frame[frame["event_time"] < cutoff + pd.Timedelta(hours=20)]
    frauds = labels[labels["is_fraud"]].sort_values("known_at").drop_duplicates("transaction_id")
    known = frauds[["transaction_id"]].assign(label_known_at=frauds["known_at"], is_fraud=1)
    online = online_store.features(later[EVENT_COLUMNS])
    offline = compute_batch_features(history[EVENT_COLUMNS], labels=known).loc[later.index]
    np.testing.assert_allclose(online[FEATURE_COLUMNS].to_numpy(), offline[FEATURE_COLUMNS].to_numpy(), rtol=0, atol=1e-9)
    # The labels did change the later transactions' features (not a vacuous equality).
    blind = compute_batch_features(history[EVENT_COLUMNS], labels=known.iloc[:0]).loc[later.index]
    assert online["terminal_fraud_count_recent_28d"].sum() > 0
    assert not np.allclose(online[FEATURE_COLUMNS].to_numpy(), blind[FEATURE_COLUMNS].to_numpy())


def canonical_state(store: OnlineFeatureStore) -> dict:
    """The store's logical content, independent of when compaction folded which open-day event:
    per customer daily (n, cents) and pair last-seen, terminals' buckets and frauds, the index,
    pending labels and counters."""
    client = store.client()
    state: dict = {}
    for key in client.scan_iter(match=f"{store.prefix}*"):
        name = key.decode()[len(store.prefix):]
        kind, entity = name.split(":", 1) if ":" in name else (name, "")
        if kind == "c":
            history = decode_history([entity], [client.hgetall(key)], [], [])
            days = history.customer_activity.assign(day=history.customer_activity["time"] // US_PER_DAY)
            buckets = days.groupby("day")[["n", "cents"]].sum()
            pairs = history.customer_terminals.groupby("terminal_id")["time"].max()
            state[name] = (sorted(buckets.itertuples(name=None)), sorted(pairs.items()))
        elif kind == "t":
            state[name] = {k: v for k, v in client.hgetall(key).items() if k != b"k"}
        elif kind == "meta":
            state[name] = client.hgetall(key)
        else:
            state[name] = client.get(key)
    return state


def _pipeline_process(env: dict, checkpoint: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "spark_streaming", "features", "--checkpoint", str(checkpoint), "--trigger-seconds", "0",
         "--max-offsets-per-trigger", "1500"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


@pytest.mark.slow
def test_kill_9_and_restart_leaves_the_store_as_a_clean_run(kafka_settings, online_store_url, spark, simulation, frame, tmp_path):
    from spark_streaming.feature_pipeline import run

    topics = kafka_settings.topics
    # Twelve days keep it short; the crash lands inside the first micro-batch (partly applied).
    cutoff = pd.Timestamp(simulation.config.start, tz="UTC") + pd.Timedelta(days=12)
    _produce(kafka_settings, topics.transactions, _history_messages(simulation, days=12))
    _produce(kafka_settings, topics.labels, encode_labels(_labels(simulation, cutoff)))

    crashed = OnlineFeatureStore.from_url(online_store_url, prefix=f"test-crash-{uuid.uuid4().hex[:6]}:")
    clean = OnlineFeatureStore.from_url(online_store_url, prefix=f"test-clean-{uuid.uuid4().hex[:6]}:")
    try:
        env = dict(os.environ, FRAUD_ONLINE_STORE_URL=online_store_url, FRAUD_ONLINE_STORE_PREFIX=crashed.prefix,
                   PYTHONPATH=os.pathsep.join(sys.path))
        process = _pipeline_process(env, tmp_path / "crash-checkpoint")
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            applied = int(crashed.client().hget(crashed.prefix + "meta", "tx_applied") or 0)
            if applied > 0:  # the first partition of the first batch is in, the batch is not committed
                break
            time.sleep(0.01)
        assert process.poll() is None, process.communicate()[0][-3000:]
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        partial = int(crashed.client().hget(crashed.prefix + "meta", "tx_applied"))
        assert 0 < partial < len(frame[frame["event_time"] < cutoff])

        # The restart (in this process: one JVM start less) replays the uncommitted batch.
        run(_config(tmp_path, checkpoint=tmp_path / "crash-checkpoint"), store=crashed, spark=spark)

        run(_config(tmp_path, checkpoint=tmp_path / "clean-checkpoint"), store=clean, spark=spark)
        assert canonical_state(crashed) == canonical_state(clean)
        later = frame[(frame["event_time"] >= cutoff) & (frame["event_time"] < cutoff + pd.Timedelta(hours=20))]
        pd.testing.assert_frame_equal(crashed.features(later[EVENT_COLUMNS]), clean.features(later[EVENT_COLUMNS]))
    finally:
        for store in (crashed, clean):
            store.clear()
            store.close()


def test_unreachable_store_at_start_is_one_line_with_its_own_exit_code(kafka_settings, tmp_path):
    from fraud_platform.infra.broker import free_port

    env = dict(os.environ, FRAUD_ONLINE_STORE_URL=f"redis://127.0.0.1:{free_port()}/0", FRAUD_ONLINE_STORE_TIMEOUT_SECONDS="1",
               PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run(
        [sys.executable, "-m", "spark_streaming", "features", "--checkpoint", str(tmp_path / "cp"), "--log-level", "ERROR"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    from spark_streaming.feature_pipeline import EXIT_ONLINE_STORE

    assert result.returncode == EXIT_ONLINE_STORE == 7
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("spark_streaming features: online store redis://127.0.0.1:"), result.stderr
    assert not (tmp_path / "cp").exists()  # stopped before Spark started


@pytest.mark.slow
def test_store_outage_mid_stream_fails_the_query_visibly(kafka_settings, spark, simulation, tmp_path):
    """A store that goes away under a running pipeline fails the batch and the query with the
    store's one-line reason (the restart replays that batch); nothing is skipped silently."""
    import threading

    from fraud_platform.infra.online_store_server import EmbeddedOnlineStore
    from spark_streaming.feature_pipeline import run

    server = EmbeddedOnlineStore(tmp_path / "own-redis")
    store = OnlineFeatureStore.from_url(server.start().url, prefix="outage:", socket_timeout_seconds=1)
    messages = _history_messages(simulation, days=2)
    _produce(kafka_settings, kafka_settings.topics.transactions, messages[: len(messages) // 2])
    config = _config(tmp_path).model_copy(update={"available_now": False, "trigger_seconds": 0.5})
    outcome: dict = {}

    def pipeline() -> None:
        try:
            run(config, store=store, spark=spark)
        except RuntimeError as error:
            outcome["error"] = str(error)

    thread = threading.Thread(target=pipeline, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not int(store.client().hget("outage:meta", "tx_applied") or 0):
            time.sleep(0.2)
        assert int(store.client().hget("outage:meta", "tx_applied") or 0) > 0
        server.stop()
        _produce(kafka_settings, kafka_settings.topics.transactions, messages[len(messages) // 2:])
        thread.join(180)
        assert not thread.is_alive()
        assert "feature pipeline query failed" in outcome["error"] and "online store" in outcome["error"]
    finally:
        server.stop()


def test_the_pipeline_and_the_store_never_import_dagster():
    code = ("import sys, spark_streaming.feature_pipeline, fraud_platform.infra.online_store; "
            "sys.exit(1 if any(m == 'dagster' or m.startswith('dagster.') for m in sys.modules) else 0)")
    result = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
