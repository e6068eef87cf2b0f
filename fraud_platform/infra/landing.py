"""Exactly-once landing of a Kafka topic into a lake zone, with dead letters for bad records.

Why offsets live in the lake and not in a consumer group: a crash between "files written" and
"offsets committed" must neither lose nor duplicate records. Each landing batch therefore
1. reads a contiguous offset range per partition (starting where the last *manifest* ended),
2. dead-letters rejected records (original bytes + reason headers) and flushes them,
3. writes its Parquet files, named by a batch id derived from the start offsets,
4. commits by writing a manifest ``_manifests/<zone>/<dataset>/<batch_id>.json`` with the ranges
   and counts.
On start, files whose batch has no manifest are orphans of a crash and are deleted, and reading
resumes from the manifests, so the re-run rewrites exactly what was lost. Dead letters of an
uncommitted batch may be produced twice (Kafka has no exactly-once for that here); the quarantine
zone dedupes them on their source coordinates. Every consumed record is counted once in its
manifest as valid or dead-lettered, so counts reconcile: consumed = valid + dead_lettered.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import signal
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa

from fraud_platform.domain.validation import Rejection
from fraud_platform.infra.dead_letters import dead_letter_headers
from fraud_platform.infra.kafka import make_producer, read_range, topic_partitions
from fraud_platform.infra.lake import LakeStore, partition_prefix
from fraud_platform.settings import KafkaSettings, platform_home

log = logging.getLogger(__name__)

FAILPOINT_ENV = "FRAUD_LANDING_FAILPOINT"  # "after_write": SIGKILL self between files and manifest
_PART_FILE = re.compile(r"part-([0-9a-z-]+)\.parquet$")


@dataclass(frozen=True)
class Decoded:
    """A record accepted by a decoder: its row and the daily partition it belongs to."""

    row: dict
    day: date


@dataclass(frozen=True)
class LandingSpec:
    """What to land: source topic, target zone/dataset, output schema and how to decode."""

    name: str
    topic: str
    dlq_topic: str | None
    zone: str
    dataset: str
    schema: pa.Schema
    decode: Callable[[object], Decoded | Rejection]
    dedupe_columns: tuple[str, ...]

    @property
    def manifest_prefix(self) -> str:
        return f"_manifests/{self.zone}/{self.dataset}"


@dataclass
class BatchManifest:
    batch_id: str
    topic: str
    ranges: dict[str, list[int]]  # partition -> [start, end)
    consumed: int
    valid: int
    dead_lettered: int
    rejections_by_rule: dict[str, int]
    rows_by_date: dict[str, int]
    files: list[str]
    committed_at: str


@dataclass
class LandingResult:
    batches: list[BatchManifest] = field(default_factory=list)
    orphans_removed: list[str] = field(default_factory=list)

    def _sum(self, name: str) -> int:
        return sum(getattr(b, name) for b in self.batches)

    @property
    def consumed(self) -> int:
        return self._sum("consumed")

    @property
    def valid(self) -> int:
        return self._sum("valid")

    @property
    def dead_lettered(self) -> int:
        return self._sum("dead_lettered")

    @property
    def rows_by_date(self) -> dict[str, int]:
        return _merge_counts(b.rows_by_date for b in self.batches)

    @property
    def rejections_by_rule(self) -> dict[str, int]:
        return _merge_counts(b.rejections_by_rule for b in self.batches)

    @property
    def ranges(self) -> dict[str, list[int]]:
        merged: dict[str, list[int]] = {}
        for batch in self.batches:
            for p, (start, end) in batch.ranges.items():
                lo, hi = merged.get(p, [start, end])
                merged[p] = [min(lo, start), max(hi, end)]
        return merged


def _merge_counts(items) -> dict[str, int]:
    total: dict[str, int] = {}
    for counts in items:
        for k, v in counts.items():
            total[k] = total.get(k, 0) + v
    return dict(sorted(total.items()))


@contextmanager
def _exclusive(name: str) -> Iterator[None]:
    """One landing writer per dataset on this machine (Dagster's `kafka_landing` pool does the
    same across runs in a deployment)."""
    lock_dir = platform_home() / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"landing-{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class _PendingBatch:
    """Accepted rows kept column-wise per day (building Arrow from columns is ~10x faster than
    from row dicts)."""

    def __init__(self, start: dict[int, int]) -> None:
        self.start = dict(start)
        self.columns_by_day: dict[date, dict[str, list]] = {}
        self.consumed = 0
        self.dead_lettered = 0
        self.rejections: dict[str, int] = {}

    @property
    def valid(self) -> int:
        return self.consumed - self.dead_lettered


class LandingEngine:
    """Lands one topic into one lake dataset; see the module docstring for the guarantees."""

    def __init__(self, store: LakeStore, kafka: KafkaSettings, spec: LandingSpec, batch_rows: int = 250_000) -> None:
        self.store = store
        self.kafka = kafka
        self.spec = spec
        self.batch_rows = batch_rows
        self._known_keys: dict[date, set[tuple]] = {}

    # -- committed state --------------------------------------------------------------------
    def manifests(self) -> list[BatchManifest]:
        keys = [k for k in self.store.list(self.spec.manifest_prefix) if k.endswith(".json")]
        return [BatchManifest(**self.store.read_json(k)) for k in keys]

    def committed_offsets(self) -> dict[int, int]:
        offsets: dict[int, int] = {}
        for manifest in self.manifests():
            for p, (_, end) in manifest.ranges.items():
                offsets[int(p)] = max(offsets.get(int(p), 0), end)
        return offsets

    def recover(self) -> list[str]:
        """Delete data files left by a batch that crashed before its manifest was written."""
        committed = {m.batch_id for m in self.manifests()}
        orphans = []
        for key in self.store.list(partition_prefix(self.spec.zone, self.spec.dataset)):
            match = _PART_FILE.search(key)
            if match and match.group(1) not in committed:
                self.store.delete(key)
                orphans.append(key)
        if orphans:
            log.warning("%s: removed %d orphan file(s) of uncommitted batches", self.spec.name, len(orphans))
        return orphans

    # -- landing ----------------------------------------------------------------------------
    def land(self, max_messages: int | None = None) -> LandingResult:
        with _exclusive(self.spec.name):
            result = LandingResult(orphans_removed=self.recover())
            start = {p: 0 for p in topic_partitions(self.kafka, self.spec.topic)}
            start.update(self.committed_offsets())
            producer = make_producer(self.kafka) if self.spec.dlq_topic else None
            delivery_errors: list[str] = []
            try:
                batch = _PendingBatch(start)
                positions = dict(start)
                for chunk, positions in read_range(self.kafka, self.spec.topic, start, max_messages=max_messages):
                    for msg in chunk:
                        self._route(msg, batch, producer, delivery_errors)
                    if batch.consumed >= self.batch_rows:
                        result.batches.append(self._commit(batch, positions, producer, delivery_errors))
                        batch = _PendingBatch(positions)
                if batch.consumed:
                    result.batches.append(self._commit(batch, positions, producer, delivery_errors))
                return result
            finally:
                if producer is not None:
                    producer.close()  # an idle client left to the GC keeps reconnecting and logging

    def _route(self, msg, batch: _PendingBatch, producer, delivery_errors: list[str]) -> None:
        batch.consumed += 1
        decoded = self.spec.decode(msg)
        if isinstance(decoded, Decoded):
            key = tuple(decoded.row[c] for c in self.spec.dedupe_columns)
            if key in self._keys_for(decoded.day):
                decoded = Rejection(
                    "duplicate_" + "_".join(self.spec.dedupe_columns), ",".join(self.spec.dedupe_columns),
                    ",".join(map(str, key)), f"{self.spec.dedupe_columns} = {key} was already landed",
                )
            else:
                self._known_keys[decoded.day].add(key)
                columns = batch.columns_by_day.get(decoded.day)
                if columns is None:
                    columns = batch.columns_by_day[decoded.day] = {name: [] for name in (*decoded.row, "_kafka_partition", "_kafka_offset")}
                for name, value in decoded.row.items():
                    columns[name].append(value)
                columns["_kafka_partition"].append(msg.partition())
                columns["_kafka_offset"].append(msg.offset())
                return
        batch.dead_lettered += 1
        batch.rejections[decoded.rule] = batch.rejections.get(decoded.rule, 0) + 1
        if producer is not None:
            headers = dead_letter_headers(decoded, self.spec.topic, msg.partition(), msg.offset())

            def on_delivery(error, _msg, errors=delivery_errors):
                if error is not None:
                    errors.append(str(error))

            while True:
                try:
                    producer.produce(self.spec.dlq_topic, value=msg.value(), key=msg.key(), headers=headers, on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)

    def _keys_for(self, day: date) -> set[tuple]:
        """Keys already landed for a day (read once per run from that day's files)."""
        if day not in self._known_keys:
            existing = self.store.read_parquet(
                self.store.parquet_keys(self.spec.zone, self.spec.dataset, day), columns=list(self.spec.dedupe_columns)
            )
            keys: set[tuple] = set()
            if existing is not None and existing.num_rows:
                keys = set(zip(*(existing.column(c).to_pylist() for c in self.spec.dedupe_columns)))
            self._known_keys[day] = keys
        return self._known_keys[day]

    def _commit(self, batch: _PendingBatch, end: dict[int, int], producer, delivery_errors: list[str]) -> BatchManifest:
        if producer is not None:
            remaining = producer.flush(60)
            if remaining or delivery_errors:
                raise RuntimeError(
                    f"{self.spec.name}: dead letters not acknowledged by {self.spec.dlq_topic} "
                    f"({remaining} pending, errors: {delivery_errors[:3]}); batch not committed, it will be retried"
                )
        batch_id = self._batch_id(batch.start)
        ingested_at = datetime.now(timezone.utc)
        files, rows_by_date = [], {}
        constants = {"_kafka_topic": self.spec.topic, "_ingested_at": ingested_at, "_batch_id": batch_id}
        for day, columns in sorted(batch.columns_by_day.items()):
            count = len(columns["_kafka_offset"])
            arrays = [
                pa.array(columns[f.name], type=f.type) if f.name in columns else pa.array([constants[f.name]] * count, type=f.type)
                for f in self.spec.schema
            ]
            key = f"{partition_prefix(self.spec.zone, self.spec.dataset, day)}/part-{batch_id}.parquet"
            self.store.write_parquet(key, pa.Table.from_arrays(arrays, schema=self.spec.schema))
            files.append(key)
            rows_by_date[day.isoformat()] = count
        if os.environ.get(FAILPOINT_ENV) == "after_write":
            os.kill(os.getpid(), signal.SIGKILL)
        manifest = BatchManifest(
            batch_id=batch_id,
            topic=self.spec.topic,
            ranges={str(p): [batch.start.get(p, 0), end[p]] for p in sorted(end) if end[p] > batch.start.get(p, 0)},
            consumed=batch.consumed,
            valid=batch.valid,
            dead_lettered=batch.dead_lettered,
            rejections_by_rule=dict(sorted(batch.rejections.items())),
            rows_by_date=rows_by_date,
            files=files,
            committed_at=ingested_at.isoformat(),
        )
        self.store.write_json(f"{self.spec.manifest_prefix}/{batch_id}.json", asdict(manifest))
        log.info(
            "%s: committed batch %s: %d consumed = %d valid + %d dead-lettered; ranges %s",
            self.spec.name, batch_id, manifest.consumed, manifest.valid, manifest.dead_lettered, manifest.ranges,
        )
        return manifest

    def _batch_id(self, start: dict[int, int]) -> str:
        """Deterministic from the start offsets, so a re-run after a crash overwrites, never adds."""
        digest = hashlib.sha1(json.dumps(sorted(start.items())).encode()).hexdigest()[:10]
        return f"{sum(start.values()):012d}-{digest}"
