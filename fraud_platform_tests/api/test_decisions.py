"""The decision API as a real server process over the real online store and a registered champion."""

from __future__ import annotations

import json

import pytest

from fraud_platform_tests.api.conftest import request_body

pytestmark = pytest.mark.slow


def test_a_valid_transaction_gets_a_decision_with_reasons_and_is_stored(server, keys, seeded_store):
    event = request_body(7, amount=950.0)
    with server.client(keys.full) as client:
        response = client.post("/v1/decisions", json=event)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["transaction_id"] == event["transaction_id"]
        assert 0.0 <= body["score"] <= 1.0
        assert body["decision"] == ("block" if body["score"] >= 0.9 else "review" if body["score"] >= 0.5 else "approve")
        assert (body["threshold"], body["block_threshold"]) == (0.5, 0.9)
        assert body["model"]["version"] == "1"
        assert body["feature_state_version"] == seeded_store.state_version()
        assert len(body["reasons"]) == 3
        for reason in body["reasons"]:
            assert reason["feature"] in reason["text"]
            assert reason["direction"] == ("raises" if reason["contribution"] > 0 else "lowers")
        assert body["latency_ms"] > 0

        stored = client.get(f"/v1/transactions/{event['transaction_id']}")
        assert stored.status_code == 200, stored.text
        assert stored.json()["score"] == body["score"]
        assert stored.json()["reasons"] == body["reasons"]
        assert stored.json()["source"] == "api"
        assert client.get("/v1/transactions/never-decided-0001").status_code == 404

        # X-API-Key works like the bearer header
        other = server.client().post("/v1/decisions", json=request_body(8), headers={"X-API-Key": keys.decide_only})
        assert other.status_code == 200, other.text

    ready = server.client().get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["model"]["version"] == "1"


def test_batch_decides_each_item_on_its_own(server, keys):
    good = [request_body(i) for i in range(5)]
    bad = dict(request_body(99), currency="XXX")
    with server.client(keys.full) as client:
        response = client.post("/v1/decisions:batch", json={"transactions": [*good[:2], bad, *good[2:]]})
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert [r["status"] for r in results] == [200, 200, 422, 200, 200, 200]
        assert results[2]["error"]["rule"] == "unknown_currency"
        assert [r["decision"]["transaction_id"] for r in results if r["status"] == 200] == [g["transaction_id"] for g in good]
        # a batch is decided over the store state like single requests: same scores
        single = client.post("/v1/decisions", json=good[0]).json()
        assert single["score"] == results[0]["decision"]["score"]
        too_many = client.post("/v1/decisions:batch", json={"transactions": [good[0]] * 1001})
        assert too_many.status_code == 422 and too_many.json()["error"]["rule"] == "batch_too_large"


PAN = "4111111111111111"


def bad_requests() -> list[tuple[str, bytes, str, str | None]]:
    """(case, body, expected rule, expected field): every class of bad input."""
    def body(**changes) -> bytes:
        return json.dumps(request_body(3, **changes)).encode()

    missing = request_body(3)
    del missing["terminal_id"]
    return [
        ("malformed", b'{"transaction_id": "x", ', "malformed_json", None),
        ("malformed with a PAN", f'{{"card_token": "{PAN}", '.encode(), "raw_pan", None),  # a card number anywhere is refused before any other rule
        ("not an object", b"[1, 2]", "malformed_json", None),
        ("missing field", json.dumps(missing).encode(), "missing_field", "terminal_id"),
        ("unexpected field", body(is_fraud=1), "unexpected_field", "is_fraud"),
        ("wrong type", body(amount="12.5"), "wrong_type", "amount"),
        ("too short id", body(transaction_id="x"), "invalid_value", "transaction_id"),
        ("negative amount", body(amount=-5.0), "non_positive_amount", "amount"),
        ("absurd amount", body(amount=5e7), "absurd_amount", "amount"),
        ("currency", body(currency="XXX"), "unknown_currency", "currency"),
        ("channel", body(channel="pigeon"), "unknown_channel", "channel"),
        ("country", body(country="ZZ"), "unknown_country", "country"),
        ("mcc", body(merchant_category="0000"), "unknown_merchant_category", "merchant_category"),
        ("future", body(event_time="2099-01-01T00:00:00Z"), "future_timestamp", "event_time"),
        ("ancient", body(event_time="1999-01-01T00:00:00Z"), "timestamp_out_of_range", "event_time"),
        ("no timezone", body(event_time="2026-01-01T00:00:00"), "invalid_value", "event_time"),
        ("PAN as card token", body(card_token=PAN), "raw_pan", "card_token"),
        ("PAN in another field", body(customer_id="4111 1111 1111 1111"), "raw_pan", "customer_id"),
        ("PAN as a number", body(terminal_id=int(PAN)), "raw_pan", "terminal_id"),
    ]


def test_every_bad_input_class_is_a_422_naming_its_rule_and_never_echoes_a_pan(server, keys):
    with server.client(keys.full) as client:
        for case, body, rule, field in bad_requests():
            response = client.post("/v1/decisions", content=body, headers={"Content-Type": "application/json"})
            assert response.status_code == 422, (case, response.status_code, response.text)
            error = response.json()["error"]
            assert (error["rule"], error["field"]) == (rule, field), (case, error)
            assert error["message"]
            assert PAN not in response.text and "4111 1111 1111 1111" not in response.text, case
        big = client.post("/v1/decisions", content=b"{" + b" " * 2_000_000 + b"}", headers={"Content-Type": "application/json"})
        assert big.status_code == 413 and big.json()["error"]["rule"] == "body_too_large"
        metrics = client.get("/metrics").text
    assert 'fraud_api_rejections_total{rule="raw_pan"} 4.0' in metrics
    assert PAN not in server.log() and "4111 1111 1111 1111" not in server.log()


def test_unknown_or_missing_keys_are_401_and_missing_scopes_403(server, keys):
    event = request_body(1)
    anonymous = server.client()
    assert anonymous.post("/v1/decisions", json=event).status_code == 401
    assert anonymous.post("/v1/decisions", json=event, headers={"Authorization": "Bearer fpk_not-a-key"}).status_code == 401
    assert anonymous.get(f"/v1/transactions/{event['transaction_id']}").status_code == 401
    forbidden = server.client(keys.read_only).post("/v1/decisions", json=event)
    assert forbidden.status_code == 403 and forbidden.json()["error"]["rule"] == "forbidden"
    assert server.client(keys.decide_only).get(f"/v1/transactions/{event['transaction_id']}").status_code == 403
    assert server.client(keys.read_only).get("/v1/transactions/never-decided-0001").status_code == 404
    # health, readiness and metrics need no key (probes and Prometheus scrape them)
    assert anonymous.get("/healthz").status_code == 200
    assert anonymous.get("/metrics").status_code == 200
    assert 'fraud_api_auth_failures_total{status="401"} 3.0' in anonymous.get("/metrics").text


def test_served_openapi_document_is_the_one_in_docs(server):
    from pathlib import Path

    served = server.client().get("/openapi.json").json()
    kept = json.loads((Path(__file__).resolve().parents[2] / "docs" / "openapi.json").read_text())
    assert served == kept, "docs/openapi.json is stale: regenerate with `python -m fraud_platform.api.openapi`"
    assert {"/v1/decisions", "/v1/decisions:batch", "/v1/transactions/{transaction_id}", "/healthz", "/readyz", "/metrics"} <= set(served["paths"])
