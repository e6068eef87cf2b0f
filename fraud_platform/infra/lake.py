"""Lake storage behind one small interface: a local folder (default) or an S3 bucket (MinIO/AWS).

Layout: ``<zone>/<dataset>/date=YYYY-MM-DD/<file>.parquet``, e.g.
``raw/transactions/date=2026-01-01/part-<batch>.parquet``. Zones: ``raw``, ``processed``,
``sandbox``, ``quarantine``, ``scored``; ``_manifests`` holds landing commit records.
Parquet is written with microsecond timestamps so Spark reads it without surprises.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from abc import ABC, abstractmethod
from datetime import date
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from fraud_platform.domain.catalogue import ZONES, Dataset
from fraud_platform.settings import LakeSettings

_DATE_DIR = re.compile(r"date=(\d{4}-\d{2}-\d{2})")
Day = date | str | None


def _where(dataset: Dataset | str, rest: tuple) -> tuple[str, str, tuple]:
    """(zone, name, remaining args) from a catalogue entry or a legacy ``zone, name`` pair."""
    if isinstance(dataset, Dataset):
        return dataset.zone, dataset.name, rest
    return dataset, rest[0], rest[1:]


def partition_prefix(dataset: Dataset | str, *args: Day) -> str:
    """Key prefix of a dataset (or of one daily partition of it): ``partition_prefix(SANDBOX, day)``.
    (``partition_prefix("sandbox", "transactions", day)`` is the pre-catalogue spelling landing uses.)"""
    zone, name, rest = _where(dataset, args)
    day = rest[0] if rest else None
    if zone not in ZONES and not zone.startswith("_"):
        raise ValueError(f"unknown lake zone {zone!r}; expected one of {ZONES}")
    base = f"{zone}/{name}"
    return base if day is None else f"{base}/date={day if isinstance(day, str) else day.isoformat()}"


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", coerce_timestamps="us", allow_truncated_timestamps=True)
    return sink.getvalue()


class LakeStore(ABC):
    """Key/value view of the lake; keys are ``/``-separated paths relative to the lake root."""

    @abstractmethod
    def uri(self, key: str = "") -> str:
        """Location Spark/DuckDB can read (absolute path or ``s3://bucket/prefix/key``)."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def read_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """All keys below ``prefix`` (recursive), sorted."""

    @abstractmethod
    def delete(self, key: str) -> None: ...

    # Derived helpers -------------------------------------------------------------------------
    def delete_prefix(self, prefix: str) -> int:
        keys = self.list(prefix)
        for key in keys:
            self.delete(key)
        return len(keys)

    def write_parquet(self, key: str, table: pa.Table) -> None:
        self.write_bytes(key, parquet_bytes(table))

    def read_parquet(self, keys: Iterable[str], columns: list[str] | None = None) -> pa.Table | None:
        tables = [pq.read_table(io.BytesIO(self.read_bytes(k)), columns=columns) for k in keys]
        return pa.concat_tables(tables, promote_options="default") if tables else None

    def parquet_keys(self, dataset: Dataset | str, *args: Day) -> list[str]:
        """Parquet files of a dataset, or of one day of it: ``parquet_keys(SANDBOX, day)``."""
        return [k for k in self.list(partition_prefix(dataset, *args)) if k.endswith(".parquet")]

    def read_partition(self, dataset: Dataset | str, *args, columns: list[str] | None = None) -> pa.Table | None:
        zone, name, rest = _where(dataset, args)
        day, columns = rest[0], (rest[1] if len(rest) > 1 else columns)
        return self.read_parquet(self.parquet_keys(zone, name, day), columns)

    def read_days(self, dataset: Dataset, days: Iterable[date | str], columns: list[str] | None = None) -> pa.Table | None:
        """All files of the given days in one table (None when none exist)."""
        return self.read_parquet([k for d in days for k in self.parquet_keys(dataset, d)], columns)

    def partition_dates(self, dataset: Dataset | str, *args: str) -> list[str]:
        found = {m.group(1) for k in self.list(partition_prefix(dataset, *args)) if (m := _DATE_DIR.search(k))}
        return sorted(found)

    def parquet_rows(self, key: str) -> int:
        """Row count of one Parquet file from its footer (no data read)."""
        return pq.ParquetFile(io.BytesIO(self.read_bytes(key))).metadata.num_rows

    def write_json(self, key: str, payload: Any) -> None:
        self.write_bytes(key, json.dumps(payload, indent=1, sort_keys=True, default=str).encode())

    def read_json(self, key: str) -> Any:
        return json.loads(self.read_bytes(key))


class LocalLakeStore(LakeStore):
    """Lake in a local folder; writes are atomic (temp file + rename) so readers never see halves."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / key

    def uri(self, key: str = "") -> str:
        return str(self._path(key)) if key else str(self.root)

    def write_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    def read_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if base.is_file():
            return [prefix]
        if not base.is_dir():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")
        )

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


class S3LakeStore(LakeStore):
    """Lake in an S3 bucket (AWS or MinIO) through a boto3 client (from dagster-aws' S3Resource)."""

    def __init__(self, client: Any, bucket: str, prefix: str = "lake") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{self._key(key)}".rstrip("/")

    def write_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def read_bytes(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except self.client.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        strip = len(self.prefix) + 1 if self.prefix else 0
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
        return sorted(keys)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))


def lake_store_from_settings(settings: LakeSettings, s3_client: Any | None = None) -> LakeStore:
    """Build the store the settings describe; S3 needs a boto3 client (made here if not given)."""
    if settings.backend == "local":
        return LocalLakeStore(settings.root)
    if not settings.bucket:
        raise ValueError("lake backend 's3' needs FRAUD_LAKE_S3_BUCKET")
    if s3_client is None:
        import boto3

        s3_client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region)
    return S3LakeStore(s3_client, settings.bucket, settings.root)
