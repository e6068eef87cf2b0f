"""Real parts for the decision API tests: the API as a uvicorn subprocess on a free port, the
project's embedded Redis as the online store (a unique key prefix per test), the SQLite MLflow
registry of the streaming tests (version 1 logistic regression, version 2 XGBoost), and a state
seeded through the store's own write path."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pandas as pd
import pytest

from fraud_platform.api.auth import new_key
from fraud_platform.domain.hashing import entity_key
from fraud_platform_tests.streaming.conftest import MODEL_NAME, Registry, transaction


@pytest.fixture(scope="session")
def api_registry(tmp_path_factory) -> Registry:
    return Registry(tmp_path_factory.mktemp("api-mlflow"))


@dataclass
class Keys:
    full: str
    read_only: str
    decide_only: str
    entries: str = field(repr=False, default="")

    @classmethod
    def make(cls) -> "Keys":
        made = {name: new_key(name, scopes) for name, scopes in
                (("full", ("decide", "read")), ("reader", ("read",)), ("decider", ("decide",)))}
        return cls(made["full"][0], made["reader"][0], made["decider"][0], ";".join(e for _, e in made.values()))


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys.make()


def history(n: int = 600, days: int = 10, prefix: str = "hist") -> pd.DataFrame:
    """Processed-shape transactions of the test customers/terminals over the last ``days`` days."""
    start = datetime.now(timezone.utc) - timedelta(days=days)
    rows = [transaction(i, when=start + timedelta(minutes=(days * 1440 - 60) * i / n), prefix=prefix) for i in range(n)]
    return pd.DataFrame({
        "transaction_id": [r["transaction_id"] for r in rows],
        "event_time": pd.to_datetime([r["event_time"] for r in rows], utc=True),
        "customer_key": [entity_key(r["customer_id"]) for r in rows],
        "terminal_id": [r["terminal_id"] for r in rows],
        "amount_eur": [float(r["amount"]) for r in rows],
    })


@dataclass
class ApiServer:
    url: str
    process: subprocess.Popen
    log_path: Path
    env: dict[str, str]

    def client(self, key: str | None = None, **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_server(tmp_path: Path, env: dict[str, str], timeout: float = 90) -> ApiServer:
    """``python -m fraud_platform.api`` on a free port; returns once /healthz answers."""
    from fraud_platform.infra.broker import free_port

    port = free_port()
    full_env = {**os.environ, "FRAUD_API_PORT": str(port), "FRAUD_API_HOST": "127.0.0.1", **env}
    log_path = tmp_path / f"api-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "fraud_platform.api"], env=full_env, stdout=log, stderr=subprocess.STDOUT)
    server = ApiServer(f"http://127.0.0.1:{port}", process, log_path, full_env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"API exited with {process.returncode}:\n{server.log()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"API did not answer /healthz within {timeout}s:\n{server.log()[-3000:]}")


def api_env(registry: Registry, keys: Keys, store_url: str, prefix: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "MLFLOW_TRACKING_URI": registry.tracking_uri,
        "MLFLOW_REGISTRY_URI": registry.tracking_uri,
        "FRAUD_MODEL_NAME": MODEL_NAME,
        "FRAUD_API_KEYS": keys.entries,
        "FRAUD_ONLINE_STORE_URL": store_url,
        "FRAUD_ONLINE_STORE_PREFIX": prefix,
        "FRAUD_DECISIONS_SQLITE_PATH": str(tmp_path / "decisions.sqlite"),
        "FRAUD_API_MODEL_REFRESH_SECONDS": "1",
        "FRAUD_STREAM_REVIEW_THRESHOLD": "0.5",
        "FRAUD_STREAM_BLOCK_THRESHOLD": "0.9",
        **extra,
    }


@pytest.fixture()
def seeded_store(online_store):
    """The test's store holding ten days of the test customers' and terminals' transactions."""
    online_store.apply_transactions(history())
    return online_store


@pytest.fixture()
def server(tmp_path, api_registry, keys, online_store_url, seeded_store):
    """The API over the seeded store with the champion at version 1 (logistic regression)."""
    api_registry.promote("1")
    api = start_server(tmp_path, api_env(api_registry, keys, online_store_url, seeded_store.prefix, tmp_path))
    yield api
    api.stop()


def request_body(i: int, **changes) -> dict:
    """A valid event of the seeded customers/terminals, a minute old, with a unique id."""
    event = transaction(i, when=datetime.now(timezone.utc) - timedelta(minutes=1), prefix=f"api{uuid.uuid4().hex[:6]}")
    event.update(changes)
    return event
