"""The API's parts without a server: it never imports Dagster, keys are hashed, the decision log
round-trips on SQLite and on a real PostgreSQL, and the request coalescing keeps requests apart."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pandas as pd
import pytest

from fraud_platform.api.auth import AuthError, KeyRing, RateLimiter, new_key, parse_entries
from fraud_platform.infra.decision_log import DecisionLog, PostgresBackend, SQLiteBackend, as_row
from fraud_platform.api.engine import rounds
from fraud_platform_tests.streaming.conftest import PG_ADMIN_DSN


def test_importing_the_api_never_imports_dagster():
    code = ("import sys, fraud_platform.api.server, fraud_platform.api.app, fraud_platform.api.engine; "
            "assert 'dagster' not in sys.modules, 'dagster imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_keys_are_stored_hashed_and_scoped():
    key, entry = new_key("console", ("read",))
    assert key not in entry
    ring = KeyRing(parse_entries(f"# analysts\n{entry}\n"))
    assert ring.authenticate(key, "read").name == "console"
    with pytest.raises(AuthError) as forbidden:
        ring.authenticate(key, "decide")
    assert forbidden.value.status == 403
    with pytest.raises(AuthError) as unknown:
        ring.authenticate(key + "x", "read")
    assert unknown.value.status == 401
    with pytest.raises(ValueError, match="64 hex"):
        parse_entries("console:not-a-hash")
    with pytest.raises(ValueError, match="unknown scope"):
        parse_entries(f"console:{'0' * 64}:admin")


def test_rate_limiter_refills_at_its_rate():
    limiter = RateLimiter(rate=1000, burst=2)
    assert limiter.acquire("a") == 0 and limiter.acquire("a") == 0
    wait = limiter.acquire("a")
    assert 0 < wait <= 0.001
    assert limiter.acquire("b") == 0  # per key


def test_coalesced_requests_never_share_a_customer_or_terminal_within_a_round():
    frame = pd.DataFrame({"customer_key": ["a", "a", "b", "c", "b"], "terminal_id": ["t1", "t2", "t1", "t3", "t4"]})
    parts = rounds(frame["customer_key"].tolist(), frame["terminal_id"].tolist())
    assert sorted(i for part in parts for i in part) == [0, 1, 2, 3, 4]
    for part in parts:
        rows = frame.iloc[part]
        assert rows["customer_key"].is_unique and rows["terminal_id"].is_unique


def _decision(tx: str, score: float) -> dict:
    return {"transaction_id": tx, "decided_at": "2026-01-01T00:00:00+00:00", "source": "api",
            "event_time": "2026-01-01T00:00:00+00:00", "customer_key": "c", "terminal_id": "t", "amount_eur": 10.0,
            "score": score, "decision": "approve", "threshold": 0.5, "block_threshold": 0.9, "model_name": "m",
            "model_version": "1", "feature_state_version": "v", "reasons": [{"feature": "amount_eur", "text": "x"}],
            "latency_ms": 1.0, "api_key": "k"}


def _round_trip(log: DecisionLog) -> None:
    log.write([_decision("tx-00000001", 0.1), _decision("tx-00000002", 0.2)])
    log.write([_decision("tx-00000001", 0.3)])  # a retried transaction keeps its latest decision
    assert log.get("tx-00000001")["score"] == 0.3
    assert log.get("tx-00000002")["reasons"] == [{"feature": "amount_eur", "text": "x"}]
    assert log.get("tx-missing") is None
    # The streaming scorer's way: one synchronous upsert of a whole micro-batch (COPY on PostgreSQL),
    # over existing rows and with an id twice in the batch: the latest decision wins.
    batch = [_decision(f"tx-batch-{i:05d}", 0.5) for i in range(500)] + [_decision("tx-batch-00007", 0.9), _decision("tx-00000002", 0.7)]
    log.backend.write_rows([as_row(d) for d in batch])
    assert (log.get("tx-batch-00007")["score"], log.get("tx-00000002")["score"], log.get("tx-batch-00499")["score"]) == (0.9, 0.7, 0.5)
    assert log.get("tx-batch-00499")["reasons"] == [{"feature": "amount_eur", "text": "x"}]
    log.close()


def test_decision_log_on_sqlite(tmp_path):
    _round_trip(DecisionLog(SQLiteBackend(tmp_path / "api" / "decisions.sqlite", "api_decisions")))


def test_decision_log_on_postgres():
    import psycopg

    admin = PG_ADMIN_DSN
    name = f"fraud_api_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        _round_trip(DecisionLog(PostgresBackend(admin.rsplit("/", 1)[0] + f"/{name}", "decisions.api_decisions")))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_an_unexpected_error_on_a_path_holding_a_card_number_is_logged_masked(caplog):
    import logging
    from types import SimpleNamespace

    from fastapi.testclient import TestClient

    from fraud_platform.api.app import create_app
    from fraud_platform.domain.card_data import contains_pan

    key, entry = new_key("reader", ("read",))

    async def broken(*_args, **_kwargs):  # a defect before the route's own card-number check
        raise RuntimeError("limiter defect")

    app = create_app(keys=KeyRing(parse_entries(entry)), limiter=SimpleNamespace(acquire_async=broken, burst=1, rate=1.0), engine=None,
                     decision_log=None, store_ping=lambda: None, max_body_bytes=1024, max_batch=1)
    caplog.set_level(logging.ERROR)
    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.get("/v1/transactions/4539148803436467", headers={"X-API-Key": key})
    assert answer.status_code == 500 and answer.json()["error"]["rule"] == "internal_error"
    assert "453914******6467" in caplog.text and not contains_pan(caplog.text)


def test_the_decision_route_answers_alike_ahead_of_fastapi_and_through_it():
    """POST /v1/decisions is served by a plain ASGI handler ahead of FastAPI; the route declared in
    FastAPI (the OpenAPI document, a request under a root_path) answers exactly alike."""
    from starlette.testclient import TestClient

    from fraud_platform.api.app import create_app

    key, entry = new_key("decider", ("decide",))
    reader, reader_entry = new_key("reader", ("read",))
    app = create_app(keys=KeyRing(parse_entries(f"{entry}\n{reader_entry}")), limiter=RateLimiter(1000, 100), engine=None,
                     decision_log=None, store_ping=lambda: None, max_body_bytes=1024, max_batch=10)
    cases = [({}, b"{}"), ({"Authorization": "Bearer fpk_unknown"}, b"{}"), ({"X-API-Key": reader}, b"{}"),
             ({"X-API-Key": key}, b'{"transaction_id": '), ({"Authorization": f"Bearer {key}"}, b'{"card_token": "4111111111111111"}'),
             ({"X-API-Key": key}, b"[" + b" " * 2000 + b"]")]

    def answers() -> list[tuple]:
        client = TestClient(app)
        out = []
        for headers, body in cases:
            response = client.post("/v1/decisions", content=body, headers={"Content-Type": "application/json", **headers})
            out.append((response.status_code, response.content, response.headers.get("content-type"),
                        response.headers.get("www-authenticate"), response.headers.get("content-length")))
        out.append(client.get("/metrics").text.count('fraud_api_requests_total{endpoint="/v1/decisions"'))
        return out

    ahead = answers()
    app.decide_asgi = None  # every request through FastAPI's routing
    through = answers()
    assert ahead == through
    assert [status for status, *_ in ahead[:-1]] == [401, 401, 403, 422, 422, 413]
    assert b"4111111111111111" not in b"".join(answer[1] for answer in ahead[:-1])
