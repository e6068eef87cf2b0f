"""The broker goes away under a running scorer: it restarts its query from the checkpoint with
backoff and scores everything once the broker is back, or, if the broker stays away longer than
FRAUD_STREAM_BROKER_OUTAGE_SECONDS, exits non-zero with one line. Never exit 0 with data unscored."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from fraud_platform.infra.broker import EmbeddedBroker
from fraud_platform.infra.kafka import ensure_topics
from fraud_platform.infra.lake import LocalLakeStore
from fraud_platform.settings import KafkaSettings

from .conftest import produce_transactions, transaction
from .test_crash_recovery import lake_rows

pytestmark = pytest.mark.slow
COMMAND = [sys.executable, "-m", "spark_streaming", "--trigger-seconds", "0.5", "--max-offsets-per-trigger", "100"]


@pytest.fixture()
def own_broker(stream_env, tmp_path, monkeypatch):
    """A durable broker this test may kill and restart (the session broker must stay up)."""
    broker = EmbeddedBroker(tmp_path / "own-broker")
    state = broker.start(durable=True)
    monkeypatch.setenv("FRAUD_KAFKA_BOOTSTRAP_SERVERS", state.address)
    ensure_topics(KafkaSettings.from_env(), [stream_env[k] for k in ("FRAUD_TOPIC_TRANSACTIONS", "FRAUD_TOPIC_TRANSACTIONS_DLQ", "FRAUD_TOPIC_PREDICTIONS")])
    yield broker, state
    broker.stop()


def _start_scorer(tmp_path, outage_seconds: int) -> subprocess.Popen:
    env = {**os.environ, "FRAUD_STREAM_EOF_TIMEOUT_SECONDS": "3", "FRAUD_STREAM_BROKER_OUTAGE_SECONDS": str(outage_seconds)}
    return subprocess.Popen(COMMAND, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "scorer.log", "wb"), start_new_session=True)


def _wait_for_batches(scorer: subprocess.Popen, lake: str, tmp_path, batches: int, deadline: float) -> None:
    while len([k for k in LocalLakeStore(lake).list("scored/transactions") if k.endswith(".parquet")]) < batches:
        assert scorer.poll() is None, (tmp_path / "scorer.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the scorer wrote no batches"
        time.sleep(0.1)


def _kill_broker_mid_stream(state, stream_env, tmp_path, outage_seconds: int, batches: int):
    """Produce 800 transactions, start the scorer, kill -9 the broker after ``batches`` batches."""
    valid = [transaction(i) for i in range(800)]
    produce_transactions(valid)
    lake = stream_env["FRAUD_LAKE_ROOT"]
    scorer = _start_scorer(tmp_path, outage_seconds)
    try:
        _wait_for_batches(scorer, lake, tmp_path, batches, time.monotonic() + 240)
        os.killpg(state.process_group, signal.SIGKILL)  # the broker host dies mid-stream
    except BaseException:
        os.killpg(scorer.pid, signal.SIGKILL)  # the driver and its JVM
        raise
    return valid, lake, scorer


def test_scorer_rides_out_a_broker_outage_and_scores_everything(stream_env, registry_env, own_broker, tmp_path):
    broker, state = own_broker
    valid, lake, scorer = _kill_broker_mid_stream(state, stream_env, tmp_path, outage_seconds=180, batches=2)
    try:
        # The broker stays down until the scorer has met the outage (its 3 s source timeout; records
        # the executors' consumers had already fetched may still be scored meanwhile) and restarts its query.
        outage_seen = time.monotonic() + 180
        while "restarting the query from its checkpoint" not in (tmp_path / "scorer.log").read_text():
            assert scorer.poll() is None, (tmp_path / "scorer.log").read_text()[-3000:]
            assert time.monotonic() < outage_seen, "the scorer never noticed the broker outage"
            time.sleep(0.5)
        broker.start(port=int(state.address.rsplit(":", 1)[1]), durable=True)
        deadline = time.monotonic() + 240
        while len(lake_rows(lake)) < len(valid):
            assert scorer.poll() is None, (tmp_path / "scorer.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"{len(lake_rows(lake))} of {len(valid)} scored after the outage"
            time.sleep(0.5)
    finally:
        scorer.send_signal(signal.SIGTERM)
        code = scorer.wait(120)
    log = (tmp_path / "scorer.log").read_text()
    assert code == 0, log[-3000:]
    assert "broker unavailable" in log and "restarting the query from its checkpoint" in log
    ids = [tx for tx, _ in lake_rows(lake)]
    assert len(ids) == len(set(ids)) == len(valid)


def test_scorer_fails_loudly_when_the_broker_stays_down(stream_env, registry_env, own_broker, tmp_path):
    _, state = own_broker
    valid, lake, scorer = _kill_broker_mid_stream(state, stream_env, tmp_path, outage_seconds=5, batches=1)
    try:
        code = scorer.wait(240)
    finally:
        if scorer.poll() is None:
            os.killpg(scorer.pid, signal.SIGKILL)
    log = (tmp_path / "scorer.log").read_text()
    scored = len(lake_rows(lake))
    assert scored < len(valid)  # data is left unscored ...
    assert code != 0, log[-3000:]  # ... so the scorer must not claim success
    # One line says why (interpreter-exit noise from native libraries may follow it).
    last = [line for line in log.splitlines() if line.startswith("spark_streaming: ")]
    assert len(last) == 1 and last[0].startswith("spark_streaming: streaming query failed: "), last
    assert "BrokerUnavailable: " in last[0] and "Traceback" not in last[0]
    last = last[0]
    assert "broker unavailable" in log and "giving up" in log
    print(f"scored {scored} of {len(valid)} before the outage; exit code {code}; last line: {last}")
