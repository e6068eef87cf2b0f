"""Shared set-up of the benchmarks that run the real streaming jobs: a temp platform home, the
embedded broker and online store, a registered champion, the job processes and their logs.

Used by ``bench/streaming.py`` (scorer speed) and ``bench/online_parity.py`` (online/offline parity).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

MODEL_NAME = "fraud_detector_bench"


def load1() -> float:
    return os.getloadavg()[0]


def bench_home(prefix: str, partitions: int, store_prefix: str = "bench:") -> Path:
    """A fresh FRAUD_PLATFORM_HOME with its SQLite MLflow registry, set in this process's environment
    (the job processes inherit it)."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.update({
        "FRAUD_PLATFORM_HOME": str(home), "FRAUD_STREAM_METRICS_PORT": "0", "FRAUD_MODEL_NAME": MODEL_NAME,
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}", "MLFLOW_REGISTRY_URI": f"sqlite:///{home / 'mlflow.db'}",
        "FRAUD_TOPIC_PARTITIONS": str(partitions), "FRAUD_SPARK_MASTER": "local[2]", "FRAUD_ONLINE_STORE_PREFIX": store_prefix,
    })
    return home


@contextmanager
def embedded_services() -> Iterator[None]:
    """The embedded broker and Redis online store of the current home (free ports), stopped on exit;
    ``FRAUD_ONLINE_STORE_URL`` points at the store."""
    from fraud_platform.infra.broker import EmbeddedBroker
    from fraud_platform.infra.online_store_server import EmbeddedOnlineStore

    broker = EmbeddedBroker.default()
    broker.start()
    online = EmbeddedOnlineStore.default()
    try:
        os.environ["FRAUD_ONLINE_STORE_URL"] = online.start().url
        yield
    finally:
        online.stop()
        broker.stop()


def register_champion(model, features: list[str], artifact_root: str, threshold: float = 0.5) -> None:
    """Log ``model`` (an XGBoost classifier or any scikit-learn-style pipeline) to the current
    MLflow registry as version 1 of MODEL_NAME with the scorer's tags, aliased ``champion``."""
    import mlflow
    from mlflow import MlflowClient

    from fraud_platform.ml.registry import publish_tags

    tracking_uri = os.environ["MLFLOW_TRACKING_URI"]
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri, tracking_uri)
    experiment = client.create_experiment("bench", artifact_location=artifact_root)
    with mlflow.start_run(experiment_id=experiment):
        if type(model).__module__.startswith("xgboost"):
            mlflow.xgboost.log_model(model, name="model", registered_model_name=MODEL_NAME, pip_requirements=["xgboost"])
        else:
            mlflow.sklearn.log_model(model, name="model", registered_model_name=MODEL_NAME, serialization_format="cloudpickle",
                                     pip_requirements=["scikit-learn", "imbalanced-learn", "xgboost"])
    for key, value in publish_tags({}, features=list(features), threshold=threshold, test_window="bench").items():
        client.set_model_version_tag(MODEL_NAME, "1", key, value)
    client.set_registered_model_alias(MODEL_NAME, "champion", "1")


def scorer_command(trigger: float, master: str = "local[2]", extra: tuple[str, ...] = ()) -> list[str]:
    """``python -m spark_streaming`` (the Spark scorer) with the benchmark's trigger and master."""
    return [sys.executable, "-m", "spark_streaming", "--trigger-seconds", str(trigger), "--spark-master", master, *extra]


def features_command(trigger: float, master: str = "local[2]", extra: tuple[str, ...] = ()) -> list[str]:
    """``python -m spark_streaming features`` (the streaming feature pipeline)."""
    return [sys.executable, "-m", "spark_streaming", "features", "--trigger-seconds", str(trigger), "--spark-master", master, *extra]


def spawn(command: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A job process in its own session (so a stuck one can be killed with its JVM), output to ``log_path``."""
    log = open(log_path, "wb")
    return subprocess.Popen(command, env=env or os.environ.copy(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop_worker(worker: subprocess.Popen) -> None:
    worker.send_signal(signal.SIGTERM)  # the job only: it stops its Spark workers itself
    try:
        worker.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)


class LogCounter:
    """Running totals of a job's per-micro-batch log lines (read incrementally): ``pattern`` has one
    group per counted number, summed by the first group's name when ``by_name``."""

    def __init__(self, path: Path, pattern: str, worker: subprocess.Popen | None = None) -> None:
        self.path, self.pattern, self.worker = Path(path), re.compile(pattern), worker
        self.offset = 0
        self.pending = b""
        self.totals: dict[str, int] = {}

    def refresh(self) -> dict[str, int]:
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            data = self.pending + handle.read()
            self.offset = handle.tell()
        *lines, self.pending = data.split(b"\n")
        for line in lines:
            for match in self.pattern.finditer(line.decode(errors="replace")):
                name, count = (match.group(1), match.group(2)) if self.pattern.groups > 1 else ("", match.group(1))
                self.totals[name] = self.totals.get(name, 0) + int(count)
        return self.totals

    def wait_for(self, expected: dict[str, int], timeout: float = 600.0) -> None:
        """Until every named total reaches its expected count; RuntimeError (with the log's tail)
        when the job exits or the timeout passes first."""
        deadline = time.monotonic() + timeout
        while True:
            totals = self.refresh()
            if all(totals.get(name, 0) >= n for name, n in expected.items()):
                return
            if (self.worker is not None and self.worker.poll() is not None) or time.monotonic() > deadline:
                tail = self.path.read_text(errors="replace").splitlines()[-15:]
                raise RuntimeError(f"{self.path.name}: expected {expected}, saw {totals}; last lines:\n" + "\n".join(tail))
            time.sleep(0.05)
