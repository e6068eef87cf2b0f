"""Failures the scorer's executor tasks must survive or report: a record a sink refuses, the online
store down at start-up, and the store going away mid-stream (fail visibly, never score blind)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psycopg
import pytest

from fraud_platform.infra.broker import free_port
from fraud_platform.infra.dead_letters import parse_dead_letter_headers
from fraud_platform.infra.online_store_server import redis_server_binary
from spark_streaming.config import StreamConfig
from spark_streaming.job import build_components, run

from .conftest import consume_all, produce_transactions, transaction
from .test_crash_recovery import lake_rows

pytestmark = pytest.mark.slow


def test_a_record_postgres_refuses_is_dead_lettered_and_the_batch_proceeds(spark, stream_env, registry_env, pg_dsn, monkeypatch):
    monkeypatch.setenv("FRAUD_ALERTS_POSTGRES_DSN", pg_dsn)  # the decision log follows it into the same database
    valid = [transaction(i, amount=950.0 if i % 5 == 0 else 30.0) for i in range(60)]
    # Valid for the (total) validator, refused by a sink: the alert table and the decision log each
    # get a constraint that rejects one id, as a database refuses a row for reasons validation cannot see.
    poisoned = dict(transaction(999, amount=950.0), transaction_id="tx-the-sink-refuses")
    unlogged = dict(transaction(998, amount=30.0), transaction_id="tx-the-log-refuses")
    produce_transactions(valid + [poisoned, unlogged])

    config = StreamConfig.load({"available_now": True})
    parts = build_components(config)  # creates the alert table and the decision log
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE fraud_alerts ADD CONSTRAINT sink_refuses_one CHECK (transaction_id <> 'tx-the-sink-refuses')")
        conn.execute("ALTER TABLE api_decisions ADD CONSTRAINT log_refuses_one CHECK (transaction_id <> 'tx-the-log-refuses')")
    run(config, spark=spark, parts=parts)

    letters = {json.loads(m.value())["transaction_id"]: parse_dead_letter_headers(m.headers())
               for m in consume_all(stream_env["FRAUD_TOPIC_TRANSACTIONS_DLQ"])}
    assert set(letters) == {poisoned["transaction_id"], unlogged["transaction_id"]}
    headers = letters[poisoned["transaction_id"]]
    assert (headers["error.rule"], headers["error.field"]) == ("sink_failed", "alerts")
    assert "sink_refuses_one" in headers["error.message"]
    headers = letters[unlogged["transaction_id"]]
    assert (headers["error.rule"], headers["error.field"]) == ("sink_failed", "decision_log")
    assert "log_refuses_one" in headers["error.message"]

    predicted = {json.loads(m.value())["transaction_id"] for m in consume_all(stream_env["FRAUD_TOPIC_PREDICTIONS"])}
    assert predicted == {t["transaction_id"] for t in valid}
    assert sorted(tx for tx, _ in lake_rows(stream_env["FRAUD_LAKE_ROOT"])) == sorted(predicted)
    with psycopg.connect(pg_dsn) as conn:
        alerted = {r[0] for r in conn.execute("SELECT transaction_id FROM fraud_alerts")}
        logged = {r[0] for r in conn.execute("SELECT transaction_id FROM api_decisions WHERE source = 'stream'")}
    assert alerted == {t["transaction_id"] for t in valid if t["amount"] == 950.0}
    assert logged == predicted  # a dead-lettered record has no decision, whichever sink refused it
    assert parts.metrics.value("fraud_stream_dead_letters_total", {"rule": "sink_failed"}) == 2


def scorer(args: list[str], env: dict[str, str], log_path) -> subprocess.Popen:
    log = open(log_path, "wb")
    return subprocess.Popen([sys.executable, "-m", "spark_streaming", *args], env={**os.environ, **env},
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def test_online_store_down_at_startup_is_one_line_with_exit_7(stream_env, registry_env):
    url = f"redis://127.0.0.1:{free_port()}/0"
    result = subprocess.run([sys.executable, "-m", "spark_streaming", "--available-now"], capture_output=True, text=True,
                            env={**os.environ, "FRAUD_ONLINE_STORE_URL": url}, timeout=300)
    assert result.returncode == 7, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("spark_streaming: online feature store unavailable: online store redis://127.0.0.1:")
    assert "ping failed" in last and "Traceback" not in result.stderr


def test_online_store_outage_mid_stream_stops_the_scorer_visibly_without_scoring_blind(stream_env, registry_env, tmp_path):
    port = free_port()
    redis = subprocess.Popen([str(redis_server_binary()), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        env = {"FRAUD_ONLINE_STORE_URL": f"redis://127.0.0.1:{port}/0", "FRAUD_ONLINE_STORE_TIMEOUT_SECONDS": "2"}
        time.sleep(0.5)
        process = scorer(["--trigger-seconds", "0.5"], env, tmp_path / "scorer.log")
        before = [transaction(i, prefix="before") for i in range(40)]
        produce_transactions(before)
        deadline = time.monotonic() + 240
        while len(lake_rows(stream_env["FRAUD_LAKE_ROOT"])) < len(before):
            assert process.poll() is None, (tmp_path / "scorer.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the scorer scored nothing"
            time.sleep(0.2)

        os.killpg(redis.pid, signal.SIGKILL)
        redis.wait()
        after = [transaction(i, prefix="after") for i in range(40)]
        produce_transactions(after)
        assert process.wait(timeout=240) == 7
    finally:
        if redis.poll() is None:
            os.killpg(redis.pid, signal.SIGKILL)
    log = (tmp_path / "scorer.log").read_text()
    assert "spark_streaming: online feature store unavailable mid-stream, batch not committed: online store redis://127.0.0.1:" in log
    predicted = {json.loads(m.value())["transaction_id"] for m in consume_all(stream_env["FRAUD_TOPIC_PREDICTIONS"])}
    assert predicted == {t["transaction_id"] for t in before}  # nothing scored without its features
