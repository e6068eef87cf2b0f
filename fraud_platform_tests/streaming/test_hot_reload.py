"""Hot reload through a real MLflow tracking server: a moved alias is picked up between micro-batches
without restarting the query, and when the server dies scoring continues with the last good model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from mlflow import MlflowClient

from fraud_platform.infra.broker import free_port
from spark_streaming.config import StreamConfig
from spark_streaming.job import build_components, run

from .conftest import MODEL_NAME, consume_all, produce_transactions, transaction, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture()
def mlflow_server(registry, tmp_path):
    port = free_port()
    log = open(tmp_path / "mlflow-server.log", "wb")
    process = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "mlflow"), "server", "--backend-store-uri", registry.tracking_uri,
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return urllib.request.urlopen(f"{url}/health", timeout=1).status == 200
        except OSError:
            assert process.poll() is None, (tmp_path / "mlflow-server.log").read_text()[-2000:]
            return False

    wait_for(healthy, "the MLflow server", timeout=180)
    yield url, process
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_alias_move_is_hot_reloaded_and_registry_outage_keeps_last_good_model(spark, stream_env, registry_env, mlflow_server, monkeypatch):
    url, server = mlflow_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", url)
    client = MlflowClient(url, url)
    config = StreamConfig.load({"trigger_seconds": 0.5, "model_refresh_seconds": 0.5})
    parts = build_components(config)
    metrics = parts.metrics
    scored = lambda: metrics.value("fraud_stream_rows_total", {"outcome": "scored"})  # noqa: E731
    stop = threading.Event()
    runner = threading.Thread(target=run, kwargs={"config": config, "spark": spark, "parts": parts, "stop": stop})
    runner.start()
    try:
        first = [transaction(i, prefix="a") for i in range(40)]
        produce_transactions(first)
        wait_for(lambda: scored() >= 40, "the first 40 predictions")

        client.set_registered_model_alias(MODEL_NAME, "champion", "2")
        wait_for(lambda: parts.watcher.current().version == "2", "the watcher to load version 2")
        second = [transaction(i, prefix="b") for i in range(40)]
        produce_transactions(second)
        wait_for(lambda: scored() >= 80, "the second 40 predictions")

        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        failures = metrics.value("fraud_stream_model_refresh_failures_total", {"stage": "registry"})
        wait_for(lambda: metrics.value("fraud_stream_model_refresh_failures_total", {"stage": "registry"}) > failures + 1,
                 "a failed registry check")
        third = [transaction(i, prefix="c") for i in range(40)]
        produce_transactions(third)
        wait_for(lambda: scored() >= 120, "predictions while the registry is down")
        assert runner.is_alive()
    finally:
        stop.set()
        runner.join(timeout=120)

    versions = {}
    for message in consume_all(stream_env["FRAUD_TOPIC_PREDICTIONS"]):
        prediction = json.loads(message.value())
        versions[prediction["transaction_id"]] = prediction["model_version"]
    assert {versions[t["transaction_id"]] for t in first} == {"1"}
    assert {versions[t["transaction_id"]] for t in second} == {"2"}
    assert {versions[t["transaction_id"]] for t in third} == {"2"}
    assert len(versions) == 120
    assert metrics.value("fraud_stream_model_swaps_total") == 2
    assert metrics.value("fraud_stream_model_version", {"model_name": MODEL_NAME}) == 2
