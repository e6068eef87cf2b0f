"""The scorer on a real Spark standalone cluster, and two scorer replicas splitting one topic."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter

import psycopg
import pytest

from fraud_platform.infra.lake import LocalLakeStore
from fraud_platform.infra.spark_cluster import StandaloneCluster

from .conftest import consume_all, produce, produce_transactions, transaction
from .test_crash_recovery import lake_rows

pytestmark = pytest.mark.slow
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def scorer(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "spark_streaming", "--available-now", *args], env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_scorer_runs_on_a_standalone_cluster(stream_env, registry_env, tmp_path):
    valid = [transaction(i, amount=950.0 if i % 10 == 0 else 25.0) for i in range(200)]
    produce_transactions(valid)
    with StandaloneCluster(tmp_path / "spark", cores=2, memory="2g", python_path=REPO) as master:
        process = scorer("--spark-master", master)
        out, _ = process.communicate(timeout=400)
        assert process.returncode == 0, out[-3000:]
        executor_logs = list((tmp_path / "spark" / "work").rglob("stderr"))
    assert executor_logs, "no executor ran on the cluster's worker"
    ids = [tx for tx, _ in lake_rows(stream_env["FRAUD_LAKE_ROOT"])]
    assert sorted(ids) == sorted(t["transaction_id"] for t in valid)
    predicted = [json.loads(m.value())["transaction_id"] for m in consume_all(stream_env["FRAUD_TOPIC_PREDICTIONS"])]
    assert sorted(predicted) == sorted(ids)
    # one lake file per (day, batch, Kafka partition): the name a replay would overwrite
    files = [k for k in LocalLakeStore(stream_env["FRAUD_LAKE_ROOT"]).list("scored/transactions") if k.endswith(".parquet")]
    assert {k.rsplit("-p", 1)[1] for k in files} == {"0000.parquet", "0001.parquet"}


def test_two_replicas_split_the_partitions_and_never_score_a_transaction_twice(stream_env, registry_env, pg_dsn, tmp_path):
    valid = [transaction(i, amount=950.0 if i % 5 == 0 else 25.0) for i in range(300)]
    produce_transactions(valid)  # alternates partitions 0 and 1
    twice = valid[7]  # the same transaction re-sent on both partitions: only one replica may score it
    produce([(None, json.dumps(twice).encode())] * 2)
    env = {"FRAUD_ALERTS_POSTGRES_DSN": pg_dsn, "FRAUD_SPARK_MASTER": "local[1]"}
    replicas = [scorer("--replica-index", str(i), "--replica-count", "2", "--checkpoint", str(tmp_path / f"ckpt-{i}"), env=env)
                for i in range(2)]
    outputs = [r.communicate(timeout=500)[0] for r in replicas]
    for replica, out in zip(replicas, outputs):
        assert replica.returncode == 0, out[-3000:]

    ids = [tx for tx, _ in lake_rows(stream_env["FRAUD_LAKE_ROOT"])]
    assert Counter(ids) == Counter(t["transaction_id"] for t in valid)  # each exactly once, across both replicas
    predicted = Counter(json.loads(m.value())["transaction_id"] for m in consume_all(stream_env["FRAUD_TOPIC_PREDICTIONS"]))
    assert predicted == Counter(ids)
    letters = consume_all(stream_env["FRAUD_TOPIC_TRANSACTIONS_DLQ"])
    assert len(letters) == 2 and {json.loads(m.value())["transaction_id"] for m in letters} == {twice["transaction_id"]}
    with psycopg.connect(pg_dsn) as conn:
        total, distinct = conn.execute("SELECT count(*), count(DISTINCT transaction_id) FROM fraud_alerts").fetchone()
        partitions = {r[0] for r in conn.execute("SELECT DISTINCT kafka_partition FROM fraud_alerts")}
    assert total == distinct == sum(1 for t in valid if t["amount"] == 950.0)
    assert partitions == {0, 1}
    # each replica read only its own partition
    files = [k for k in LocalLakeStore(stream_env["FRAUD_LAKE_ROOT"]).list("scored/transactions") if k.endswith(".parquet")]
    assert {k.rsplit("-p", 1)[1] for k in files} == {"0000.parquet", "0001.parquet"}
    for out in outputs:  # 150 transactions + 1 copy of the re-sent one per partition, per replica
        assert sum(int(n) for n in re.findall(r"batch \d+: (\d+) in = ", out)) == 151, out[-2000:]
