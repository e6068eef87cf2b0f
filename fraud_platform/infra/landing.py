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

No record can stop landing: the validator never raises, and a row that still cannot be written
(a validator gap) is dead-lettered with the writer's error (rule ``unwritable_record``) while
the rest of its batch lands. Dead letters are PAN-masked and cut to the broker's message size;
the untruncated original of a cut one is kept in ``quarantine/originals/`` unless it held a PAN.

Duplicates: a key landed before is never landed again, whatever its event date. Each committed
batch also writes its keys to ``_dedupe/<zone>/<dataset>/landed=YYYY-MM-DD/<batch_id>.parquet``;
a run loads the last ``dedupe_window_days`` of that index (memory bounded by the window, older
days are deleted), plus, as before, the keys already in each event day it touches.
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
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa

from fraud_platform.domain.card_data import mask_pans
from fraud_platform.domain.validation import Rejection, shown_value
from fraud_platform.infra.dead_letters import HEADER_PREFIX, dead_letter_message
from fraud_platform.infra.kafka import make_producer, read_range, topic_partitions
from fraud_platform.infra.lake import LakeStore, parquet_bytes, partition_prefix
from fraud_platform.settings import IngestionSettings, KafkaSettings, platform_home

log = logging.getLogger(__name__)

_PART_FILE = re.compile(r"part-([0-9a-z-]+)\.parquet$")
_INDEX_FILE = re.compile(r"landed=(\d{4}-\d{2}-\d{2})/([0-9a-z-]+)\.parquet$")


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

    @property
    def dedupe_prefix(self) -> str:
        return f"_dedupe/{self.zone}/{self.dataset}"


def original_key(dataset: str, sha256: str) -> str:
    """Where landing keeps the untruncated original of an oversized dead letter."""
    return f"{partition_prefix('quarantine', 'originals')}/{dataset}/{sha256}.bin"


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

    def __init__(
        self, store: LakeStore, kafka: KafkaSettings, spec: LandingSpec, batch_rows: int = 250_000,
        ingestion: IngestionSettings | None = None,
    ) -> None:
        self.store = store
        self.kafka = kafka
        self.spec = spec
        self.batch_rows = batch_rows
        self.ingestion = ingestion or IngestionSettings.from_env()
        self._known_keys: dict[date, set[tuple]] = {}
        self._recent_keys: set[tuple] | None = None  # the dedupe index's window, loaded on first use

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
        for key in [*self.store.list(partition_prefix(self.spec.zone, self.spec.dataset)), *self.store.list(self.spec.dedupe_prefix)]:
            match = _PART_FILE.search(key) or _INDEX_FILE.search(key)
            if match and match.groups()[-1] not in committed:
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
            if key in self._recent() or key in self._keys_for(decoded.day):
                decoded = Rejection(
                    "duplicate_" + "_".join(self.spec.dedupe_columns), ",".join(self.spec.dedupe_columns),
                    ",".join(map(str, key)), f"{self.spec.dedupe_columns} = {key} was already landed",
                )
            else:
                self._known_keys[decoded.day].add(key)
                self._recent_keys.add(key)
                columns = batch.columns_by_day.get(decoded.day)
                if columns is None:
                    columns = batch.columns_by_day[decoded.day] = {name: [] for name in (*decoded.row, "_kafka_partition", "_kafka_offset")}
                for name, value in decoded.row.items():
                    columns[name].append(value)
                columns["_kafka_partition"].append(msg.partition())
                columns["_kafka_offset"].append(msg.offset())
                return
        self._dead_letter(decoded, msg, batch, producer, delivery_errors)

    def _dead_letter(self, rejection: Rejection, msg, batch: _PendingBatch, producer, delivery_errors: list[str]) -> None:
        batch.dead_lettered += 1
        batch.rejections[rejection.rule] = batch.rejections.get(rejection.rule, 0) + 1
        if producer is None:
            return
        letter = dead_letter_message(
            rejection, msg.value(), msg.key(), self.spec.topic, msg.partition(), msg.offset(), self.ingestion.dlq_max_message_bytes,
        )
        headers = letter.headers
        if letter.truncated and not letter.held_pan:
            location = original_key(self.spec.dataset, letter.original_sha256)
            if not self.store.exists(location):
                self.store.write_bytes(location, msg.value())
            headers = [*headers, (HEADER_PREFIX + "original.location", location.encode())]

        def on_delivery(error, _msg, errors=delivery_errors):
            if error is not None:
                errors.append(str(error))

        while True:
            try:
                producer.produce(self.spec.dlq_topic, value=letter.value, key=letter.key, headers=headers, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)

    def _recent(self) -> set[tuple]:
        """Keys landed within the dedupe window (any event date); older index days are deleted."""
        if self._recent_keys is None:
            oldest = (datetime.now(timezone.utc).date() - timedelta(days=self.ingestion.dedupe_window_days)).isoformat()
            keep = []
            for key in self.store.list(self.spec.dedupe_prefix):
                match = _INDEX_FILE.search(key)
                if match is None:
                    continue
                if match.group(1) < oldest:
                    self.store.delete(key)
                else:
                    keep.append(key)
            table = self.store.read_parquet(keep, columns=list(self.spec.dedupe_columns))
            self._recent_keys = set()
            if table is not None and table.num_rows:
                self._recent_keys = set(zip(*(table.column(c).to_pylist() for c in self.spec.dedupe_columns)))
        return self._recent_keys

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
        batch_id = self._batch_id(batch.start)
        ingested_at = datetime.now(timezone.utc)
        constants = {"_kafka_topic": self.spec.topic, "_ingested_at": ingested_at, "_batch_id": batch_id}
        # Serialised before the dead letters are flushed: a row that cannot be written becomes one more.
        payloads = {
            day: self._parquet_or_dead_letter(day, columns, constants, batch, producer, delivery_errors)
            for day, columns in sorted(batch.columns_by_day.items())
        }
        if producer is not None:
            remaining = producer.flush(60)
            if remaining or delivery_errors:
                raise RuntimeError(
                    f"{self.spec.name}: dead letters not acknowledged by {self.spec.dlq_topic} "
                    f"({remaining} pending, errors: {delivery_errors[:3]}); batch not committed, it will be retried"
                )
        files, rows_by_date, landed_keys = [], {}, []
        for day, (data, keys) in payloads.items():
            if not keys:
                continue
            key = f"{partition_prefix(self.spec.zone, self.spec.dataset, day)}/part-{batch_id}.parquet"
            self.store.write_bytes(key, data)
            files.append(key)
            rows_by_date[day.isoformat()] = len(keys)
            landed_keys.extend(keys)
        if landed_keys:
            index = pa.table({c: [k[i] for k in landed_keys] for i, c in enumerate(self.spec.dedupe_columns)})
            self.store.write_parquet(f"{self.spec.dedupe_prefix}/landed={ingested_at.date().isoformat()}/{batch_id}.parquet", index)
        if self.ingestion.landing_failpoint == "after_write":  # test hook: crash between files and manifest
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

    def _parquet_or_dead_letter(self, day: date, columns: dict[str, list], constants: dict, batch: _PendingBatch, producer, delivery_errors):
        """(Parquet bytes, dedupe keys) of a day's rows; rows the writer refuses are dead-lettered."""
        while True:
            count = len(columns["_kafka_offset"])
            try:
                arrays = [
                    pa.array(columns[f.name], type=f.type) if f.name in columns else pa.array([constants[f.name]] * count, type=f.type)
                    for f in self.spec.schema
                ]
                data = parquet_bytes(pa.Table.from_arrays(arrays, schema=self.spec.schema))
                return data, list(zip(*(columns[c] for c in self.spec.dedupe_columns)))
            except (pa.ArrowException, OverflowError, ValueError, TypeError) as error:
                row, field, value, reason = self._unwritable_row(columns, constants, error)
            rejection = Rejection(
                "unwritable_record", field, shown_value(value),
                f"the lake writer refused {field or 'the record'} = {shown_value(value)}: {mask_pans(str(reason))[:300]}",
            )
            log.error("%s: %s (partition %s offset %s)", self.spec.name, rejection.message, columns["_kafka_partition"][row], columns["_kafka_offset"][row])
            msg = self._refetch(columns["_kafka_partition"][row], columns["_kafka_offset"][row])
            key = tuple(columns[c][row] for c in self.spec.dedupe_columns)
            self._recent().discard(key)
            self._known_keys.get(day, set()).discard(key)
            for values in columns.values():
                del values[row]
            self._dead_letter(rejection, msg, batch, producer, delivery_errors)

    def _unwritable_row(self, columns: dict[str, list], constants: dict, error: Exception) -> tuple[int, str | None, object, object]:
        """(row, field, value, error) of the first row the writer refuses, found value by value."""
        for f in self.spec.schema:
            if f.name not in columns:
                continue
            for row, value in enumerate(columns[f.name]):
                try:
                    pa.array([value], type=f.type)
                    if value is None and not f.nullable:
                        raise ValueError(f"null in non-nullable column {f.name}")
                except (pa.ArrowException, OverflowError, ValueError, TypeError) as cell_error:
                    return row, f.name, value, cell_error
        for row in range(len(columns["_kafka_offset"])):  # no single cell fails: try whole rows
            try:
                one = {name: values[row : row + 1] for name, values in columns.items()}
                arrays = [pa.array(one[f.name], type=f.type) if f.name in one else pa.array([constants[f.name]], type=f.type) for f in self.spec.schema]
                parquet_bytes(pa.Table.from_arrays(arrays, schema=self.spec.schema))
            except (pa.ArrowException, OverflowError, ValueError, TypeError) as row_error:
                return row, None, {name: values[row] for name, values in columns.items()}, row_error
        raise RuntimeError(f"{self.spec.name}: the batch cannot be written but no single row fails: {error}") from error

    def _refetch(self, partition: int, offset: int):
        """The original message at a source offset (only for the rare row the writer refuses)."""
        for chunk, _ in read_range(self.kafka, self.spec.topic, {partition: offset}, max_messages=1):
            for msg in chunk:
                if msg.offset() == offset:
                    return msg
        raise RuntimeError(f"{self.spec.topic}[{partition}]@{offset} could not be read back to dead-letter it")

    def _batch_id(self, start: dict[int, int]) -> str:
        """Deterministic from the start offsets, so a re-run after a crash overwrites, never adds."""
        digest = hashlib.sha1(json.dumps(sorted(start.items())).encode()).hexdigest()[:10]
        return f"{sum(start.values()):012d}-{digest}"
