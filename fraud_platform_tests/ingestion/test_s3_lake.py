"""The lake on S3 (as with MinIO), exercised against a real S3-compatible server process (moto)."""

import json
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from fraud_platform.defs.resources import LakeResource
from fraud_platform.infra.broker import free_port, port_open
from fraud_platform.infra.landing import LandingEngine
from fraud_platform.infra.landing_specs import transactions_spec
from fraud_platform.infra.publish import RateLimitedProducer


@pytest.fixture()
def s3_server(monkeypatch: pytest.MonkeyPatch):
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not port_open("127.0.0.1", port):
        assert time.monotonic() < deadline and server.poll() is None, "moto server did not start"
        time.sleep(0.1)
    for name, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="fraud-lake")
    yield endpoint
    server.terminate()
    server.wait(10)


def test_landing_into_s3_bucket(kafka_settings, s3_server: str) -> None:
    lake = LakeResource(backend="s3", root="lake", bucket="fraud-lake", s3_endpoint_url=s3_server)
    store = lake.store()
    assert store.uri("raw") == "s3://fraud-lake/lake/raw"

    record = {
        "event_time": "2026-03-04T05:06:07Z", "customer_id": "C1", "card_token": "tok_0123456789abcdef",
        "terminal_id": "T1", "amount": 12.0, "currency": "GBP", "merchant_category": "5812", "channel": "ecommerce", "country": "GB",
    }
    producer = RateLimitedProducer(kafka_settings)
    producer.send(kafka_settings.topics.transactions, [(None, json.dumps({**record, "transaction_id": f"tx-s3-{i:06d}"}).encode()) for i in range(100)] + [(None, b"{")])
    producer.close()

    result = LandingEngine(store, kafka_settings, transactions_spec(kafka_settings.topics)).land()
    assert (result.valid, result.dead_lettered) == (100, 1)

    objects = boto3.client("s3", endpoint_url=s3_server).list_objects_v2(Bucket="fraud-lake")["Contents"]
    keys = sorted(o["Key"] for o in objects)
    assert any(k.startswith("lake/raw/transactions/date=2026-03-04/part-") and k.endswith(".parquet") for k in keys)
    assert any(k.startswith("lake/_manifests/raw/transactions/") for k in keys)
    table = store.read_partition("raw", "transactions", "2026-03-04")
    assert table.num_rows == 100 and table.column("currency").to_pylist() == ["GBP"] * 100
    # A second run on the same bucket resumes from the manifests and lands nothing twice.
    assert LandingEngine(store, kafka_settings, transactions_spec(kafka_settings.topics)).land().consumed == 0
