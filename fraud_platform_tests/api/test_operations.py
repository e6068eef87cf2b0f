"""Operating the decision API: rate limits, hot reload under load, registry and store outages, and
the same score as the streaming path for the same transaction over the same state."""

from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest

from fraud_platform_tests.api.conftest import MODEL_NAME, api_env, history, request_body, start_server

pytestmark = pytest.mark.slow


def wait_until_ready(server, workers: int = 2, timeout: float = 240) -> None:
    """Until every worker process has started (each logs its own startup)."""
    deadline = time.monotonic() + timeout
    while server.log().count("Application startup complete") < workers:
        assert time.monotonic() < deadline, server.log()[-3000:]
        time.sleep(0.2)


def hgetall_calls(store) -> int:
    """Entity hashes Redis has read so far (its command statistics count the calls of scripts too)."""
    return int(store.client().info("commandstats").get("cmdstat_hgetall", {}).get("calls", 0))


def test_rate_limit_is_per_key_with_retry_after(tmp_path, api_registry, keys, online_store_url, seeded_store):
    """Two worker processes share each key's bucket (it lives in the online store's Redis)."""
    api_registry.promote("1")
    env = api_env(api_registry, keys, online_store_url, seeded_store.prefix, tmp_path,
                  FRAUD_API_RATE_LIMIT_PER_SECOND="1", FRAUD_API_RATE_LIMIT_BURST="3", FRAUD_API_WORKERS="2")
    server = start_server(tmp_path, env, timeout=240)  # two processes loading the model on a busy machine
    try:
        wait_until_ready(server)
        # Eight concurrent requests on their own connections (spread over both workers): buckets per
        # worker would let up to six through; the shared one lets three through, plus one per
        # second the burst took (the refill).
        def one(i: int) -> int:
            with server.client(keys.decide_only) as fresh:
                return fresh.post("/v1/decisions", json=request_body(100 + i)).status_code

        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            burst = list(pool.map(one, range(8)))
        refilled = int(time.monotonic() - started)
        assert 3 <= burst.count(200) <= 3 + refilled and burst.count(429) == 8 - burst.count(200), (burst, refilled)
        with server.client(keys.full) as client:
            statuses = [client.post("/v1/decisions", json=request_body(i)).status_code for i in range(5)]
            assert statuses[:3] == [200, 200, 200] and 429 in statuses[3:], statuses
            reads = hgetall_calls(seeded_store)
            limited = client.post("/v1/decisions", json=request_body(9))
            assert limited.status_code == 429 and limited.json()["error"]["rule"] == "rate_limited"
            assert hgetall_calls(seeded_store) == reads, "a refused request's features were read"
            assert int(limited.headers["Retry-After"]) >= 1
            # another key has its own bucket
            assert server.client(keys.read_only).get("/v1/transactions/tx-unknown-0001").status_code == 404
            time.sleep(int(limited.headers["Retry-After"]) + 0.1)
            assert client.post("/v1/decisions", json=request_body(11)).status_code == 200
            # a batch costs one token per event: 5 events against a bucket of 3 is refused
            assert client.post("/v1/decisions:batch", json={"transactions": [request_body(i) for i in range(5)]}).status_code == 429
    finally:
        server.stop()


def test_hot_reload_under_load_fails_no_request_and_later_answers_use_the_new_version(server, keys, api_registry):
    results: list[list[tuple[float, int, str | None]]] = [[], []]
    stop = threading.Event()

    def load(out: list) -> None:
        with server.client(keys.full) as client:
            i = 0
            while not stop.is_set():
                response = client.post("/v1/decisions", json=request_body(i))
                version = response.json()["model"]["version"] if response.status_code == 200 else None
                out.append((time.monotonic(), response.status_code, version))
                i += 1

    threads = [threading.Thread(target=load, args=(out,)) for out in results]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        api_registry.promote("2")
        promoted = time.monotonic()
        deadline = promoted + 30
        while time.monotonic() < deadline and sum(1 for out in results for _, _, v in out if v == "2") < 20:
            time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        api_registry.promote("1")
    everything = [r for out in results for r in out]
    assert len(everything) > 40
    assert all(status == 200 for _, status, _ in everything), [r for r in everything if r[1] != 200][:5]
    assert {v for _, _, v in everything} == {"1", "2"}
    for out in results:  # once a client saw version 2, it never sees version 1 again
        versions = [v for _, _, v in out]
        first_new = versions.index("2")
        assert set(versions[first_new:]) == {"2"}, versions
    metrics = server.client().get("/metrics").text
    assert 'fraud_api_model_version{model="fraud_detector_stream_test",version="2"} 1.0' in metrics


def test_registry_outage_keeps_the_last_good_model(tmp_path, api_registry, keys, online_store_url, seeded_store):
    api_registry.promote("1")
    registry_copy = tmp_path / "registry" / "mlflow.db"
    registry_copy.parent.mkdir()
    shutil.copy(api_registry.tracking_uri.removeprefix("sqlite:///"), registry_copy)
    env = api_env(api_registry, keys, online_store_url, seeded_store.prefix, tmp_path)
    env["MLFLOW_TRACKING_URI"] = env["MLFLOW_REGISTRY_URI"] = f"sqlite:///{registry_copy}"
    server = start_server(tmp_path, env)
    try:
        with server.client(keys.full) as client:
            assert client.post("/v1/decisions", json=request_body(1)).json()["model"]["version"] == "1"
            registry_copy.write_bytes(b"this is no longer a database" * 1000)  # the registry breaks (same inode)
            time.sleep(3)  # several refresh attempts (every second)
            response = client.post("/v1/decisions", json=request_body(2))
            assert response.status_code == 200 and response.json()["model"]["version"] == "1"
            assert client.get("/readyz").status_code == 200
            failures = [line for line in client.get("/metrics").text.splitlines()
                        if line.startswith("fraud_api_champion_refresh_failures_total{")]
            assert failures and float(failures[0].split()[-1]) >= 1, failures
    finally:
        server.stop()


@contextmanager
def server_over_its_own_store(tmp_path, api_registry, keys, prefix: str, timeout_seconds: str):
    """(embedded Redis, its state, API server) over a store of its own that the test may stop or freeze."""
    from fraud_platform.infra.online_store import OnlineFeatureStore
    from fraud_platform.infra.online_store_server import EmbeddedOnlineStore

    redis = EmbeddedOnlineStore(tmp_path / "redis")
    state = redis.start()
    try:
        OnlineFeatureStore.from_url(state.url, prefix=prefix).apply_transactions(history())
        api_registry.promote("1")
        server = start_server(tmp_path, api_env(api_registry, keys, state.url, prefix, tmp_path,
                                                FRAUD_ONLINE_STORE_TIMEOUT_SECONDS=timeout_seconds))
        try:
            yield redis, state, server
        finally:
            server.stop()
    finally:
        redis.stop()


def test_store_outage_is_503_and_the_api_recovers(tmp_path, api_registry, keys):
    with server_over_its_own_store(tmp_path, api_registry, keys, "outage:", "1") as (redis, state, server):
        with server.client(keys.full) as client:
            assert client.post("/v1/decisions", json=request_body(1)).status_code == 200
            redis.stop()
            ready = client.get("/readyz")
            assert ready.status_code == 503 and not ready.json()["checks"]["store"]["ok"]
            down = client.post("/v1/decisions", json=request_body(2))
            assert down.status_code == 503, down.text
            assert down.json()["error"]["rule"] == "store_unavailable" and "Retry-After" in down.headers
            redis.start(port=state.port)
            deadline = time.monotonic() + 20
            while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert client.get("/readyz").status_code == 200
            assert client.post("/v1/decisions", json=request_body(3)).status_code == 200


def test_a_hung_store_never_blocks_the_event_loop(tmp_path, api_registry, keys):
    """Redis stopped, not down (connections open, no answers): a decision waits for the store's
    timeout and gets a 503, while the worker keeps answering other requests meanwhile."""
    import os
    import signal

    with server_over_its_own_store(tmp_path, api_registry, keys, "hung:", "5") as (_redis, state, server):
        with server.client(keys.full) as client, ThreadPoolExecutor(1) as pool:
            assert client.post("/v1/decisions", json=request_body(1)).status_code == 200
            os.kill(state.pid, signal.SIGSTOP)
            try:
                pending = pool.submit(lambda: server.client(keys.full).post("/v1/decisions", json=request_body(2)))
                time.sleep(0.5)  # the decision is waiting for Redis now
                assert server.client().get("/healthz").status_code == 200
                assert server.client().get("/metrics").status_code == 200
                assert not pending.done(), "the worker answered nothing else while the decision waited for Redis"
                down = pending.result(timeout=60)
                assert down.status_code == 503, down.text
                assert down.json()["error"]["rule"] == "store_unavailable" and "Retry-After" in down.headers
            finally:
                os.kill(state.pid, signal.SIGCONT)
            assert client.post("/v1/decisions", json=request_body(3)).status_code == 200  # a new connection


def test_api_and_streaming_path_give_the_same_score_over_the_same_state(tmp_path, api_registry, keys, online_store_url,
                                                                          seeded_store):
    """Same transaction, same store state: the API's score equals the streaming path's (the stream's
    validation and processed frame, the store's features, the stream's model loader) and the
    offline one (``compute_batch_features`` over the same history)."""
    import orjson

    from fraud_platform.domain.batch_validation import validate_transactions
    from fraud_platform.domain.features import FEATURE_COLUMNS, compute_batch_features
    from spark_streaming.champion import load_predictor
    from spark_streaming.scoring import processed_frame, stream_validator

    api_registry.promote("2")  # XGBoost: the API's inplace_predict fast path vs the stream's predict_proba
    server = start_server(tmp_path, api_env(api_registry, keys, online_store_url, seeded_store.prefix, tmp_path))
    try:
        events = [request_body(i, amount=float(a)) for i, a in zip(range(6), (12.5, 950.0, 80.0, 300.0, 45.0, 230.0))]
        with server.client(keys.full) as client:
            api_scores = [client.post("/v1/decisions", json=e).json()["score"] for e in events]
    finally:
        server.stop()
        api_registry.promote("1")

    predict, _estimator = load_predictor(f"models:/{MODEL_NAME}/2")
    validated = validate_transactions([orjson.dumps(e) for e in events], stream_validator())
    frame = processed_frame(validated.accepted)
    features = FEATURE_COLUMNS  # what the test registry publishes as the versions' feature list
    stream_scores = [float(predict(seeded_store.features(frame.iloc[[i]])[features])[0]) for i in range(len(frame))]
    np.testing.assert_allclose(api_scores, stream_scores, rtol=0, atol=1e-7)

    hist = history()
    for i in range(len(frame)):
        offline = compute_batch_features(pd.concat([hist, frame.iloc[[i]][hist.columns]], ignore_index=True)).iloc[[-1]]
        assert float(predict(offline[features])[0]) == pytest.approx(api_scores[i], abs=1e-7)


def test_without_a_champion_the_api_starts_unready_and_refuses_decisions(tmp_path, api_registry, keys, online_store_url,
                                                                          seeded_store):
    env = api_env(api_registry, keys, online_store_url, seeded_store.prefix, tmp_path, FRAUD_MODEL_NAME="no_such_model")
    server = start_server(tmp_path, env)
    try:
        with server.client(keys.full) as client:
            ready = client.get("/readyz")
            assert ready.status_code == 503 and not ready.json()["checks"]["model"]["ok"]
            assert ready.json()["checks"]["store"]["ok"]
            refused = client.post("/v1/decisions", json=request_body(1))
            assert refused.status_code == 503 and refused.json()["error"]["rule"] == "model_unavailable"
            assert "no_such_model" in refused.json()["error"]["message"]
    finally:
        server.stop()


def test_startup_errors_are_one_line_with_exit_codes(tmp_path, keys):
    import os
    import subprocess
    import sys

    def serve(**env: str) -> subprocess.CompletedProcess:
        full = {k: v for k, v in os.environ.items() if not k.startswith(("FRAUD_API_KEYS", "FRAUD_ONLINE_STORE"))}
        full.update({"FRAUD_PLATFORM_HOME": str(tmp_path / "home"), "FRAUD_API_PORT": "0", **env})
        return subprocess.run([sys.executable, "-m", "fraud_platform.api"], env=full, capture_output=True, text=True, timeout=120)

    no_keys = serve()
    assert no_keys.returncode == 2, no_keys.stderr
    assert no_keys.stderr.strip().splitlines()[-1].startswith("fraud-platform serve: no API keys configured")
    bad_key = serve(FRAUD_API_KEYS="ops:not-a-hash")
    assert bad_key.returncode == 2 and "expected name:sha256hex" in bad_key.stderr
    no_store = serve(FRAUD_API_KEYS=keys.entries)  # a fresh home: no embedded Redis running, no URL
    assert no_store.returncode == 3, no_store.stderr
    assert "No online store configured" in no_store.stderr and "Traceback" not in no_store.stderr
    no_secret = serve(FRAUD_API_KEYS=keys.entries, FRAUD_PLATFORM_ENV="docker", FRAUD_TOKENISATION_KEY="")
    assert no_secret.returncode == 2 and "Traceback" not in no_secret.stderr, no_secret.stderr
    assert no_secret.stderr.strip().splitlines()[-1].startswith("fraud-platform serve: configuration error: FRAUD_TOKENISATION_KEY is not set")
