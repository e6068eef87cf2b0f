"""The loopback S3 store under the durable broker, driven by a real S3 client (boto3) against the
real server process: the conditional writes tansu's correctness rests on (``rclone serve s3``
ignored both, and acknowledged messages were lost), listing and ranged reads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from fraud_platform.infra.broker import _wait_for_port, free_port


@pytest.fixture()
def s3(tmp_path: Path):
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "fraud_platform.infra.local_s3", "--root", str(tmp_path / "data"), "--port", str(port)])
    try:
        _wait_for_port("127.0.0.1", port, 20, server, "local S3", tmp_path / "none.log")
        client = boto3.client(
            "s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="k", aws_secret_access_key="s",
            region_name="us-east-1", config=Config(retries={"max_attempts": 1}),
        )
        client.create_bucket(Bucket="tansu")
        yield client, tmp_path / "data"
    finally:
        server.terminate()
        server.wait(10)


def _code(error: pytest.ExceptionInfo) -> str:
    return error.value.response["Error"]["Code"]


def test_create_only_and_compare_and_swap_writes_are_enforced(s3) -> None:
    client, root = s3
    first = client.put_object(Bucket="tansu", Key="p/watermark.json", Body=b"1", IfNoneMatch="*")["ETag"]
    with pytest.raises(ClientError) as error:  # a second creator loses, the first write stays
        client.put_object(Bucket="tansu", Key="p/watermark.json", Body=b"2", IfNoneMatch="*")
    assert _code(error) == "PreconditionFailed"
    second = client.put_object(Bucket="tansu", Key="p/watermark.json", Body=b"3", IfMatch=first)["ETag"]
    with pytest.raises(ClientError) as error:  # a writer holding the old version loses
        client.put_object(Bucket="tansu", Key="p/watermark.json", Body=b"4", IfMatch=first)
    assert _code(error) == "PreconditionFailed"
    got = client.get_object(Bucket="tansu", Key="p/watermark.json")
    assert got["Body"].read() == b"3" and got["ETag"] == second != first
    assert (root / "tansu/p/watermark.json").read_bytes() == b"3"
    assert not [p for p in (root / "tansu/p").iterdir() if p.name.startswith(".tmp-")]  # no temp files left


def test_listing_ranges_and_deletes(s3) -> None:
    client, _ = s3
    for offset in (0, 10, 20):
        client.put_object(Bucket="tansu", Key=f"t/0/records/{offset:020}.batch", Body=b"x" * (offset + 5))
    client.put_object(Bucket="tansu", Key="t/0/watermark.json", Body=b"{}")
    client.put_object(Bucket="tansu", Key="t/1/watermark.json", Body=b"{}")
    listed = client.list_objects_v2(Bucket="tansu", Prefix="t/0/records/", StartAfter=f"t/0/records/{0:020}.batch")
    assert [o["Key"] for o in listed["Contents"]] == [f"t/0/records/{o:020}.batch" for o in (10, 20)]
    assert listed["Contents"][1]["Size"] == 25
    folders = client.list_objects_v2(Bucket="tansu", Prefix="t/", Delimiter="/")
    assert [p["Prefix"] for p in folders["CommonPrefixes"]] == ["t/0/", "t/1/"] and "Contents" not in folders
    ranged = client.get_object(Bucket="tansu", Key=f"t/0/records/{10:020}.batch", Range="bytes=2-5")
    assert ranged["Body"].read() == b"xxxx" and ranged["ContentRange"] == "bytes 2-5/15"
    client.delete_object(Bucket="tansu", Key="t/1/watermark.json")
    with pytest.raises(ClientError) as error:
        client.get_object(Bucket="tansu", Key="t/1/watermark.json")
    assert _code(error) == "NoSuchKey"
