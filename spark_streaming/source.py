"""Kafka as a Spark 4 Python Data Source (``format("fraud_kafka")``), backed by confluent-kafka.

Why not ``format("kafka")``: the JVM connector jar is not always on the classpath (no Maven on the
embedded setup); ``FRAUD_STREAM_SOURCE=native`` still selects it where it is (docker-compose).

Offsets are ``{"<partition>": next_offset}`` JSON that Spark writes to its checkpoint before each
micro-batch, so a restarted query replays exactly the same ranges. Every input partition reads
exactly ``[start, end)`` of one Kafka partition with assign + seek (never a consumer-group
position). The end of a partition is found from partition-EOF, i.e. the Fetch response's high
watermark, because ListOffsets under-reports on the embedded tansu broker.
"""

from __future__ import annotations

import json
import time
from typing import Iterator, Mapping

import pyarrow as pa
from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadLimit, ReadMaxRows, SupportsTriggerAvailableNow

SOURCE_NAME = "fraud_kafka"
KAFKA_SCHEMA = "key binary, value binary, topic string, partition int, offset bigint, timestamp timestamp"
ARROW_SCHEMA = pa.schema(
    [
        pa.field("key", pa.binary()),
        pa.field("value", pa.binary()),
        pa.field("topic", pa.string()),
        pa.field("partition", pa.int32()),
        pa.field("offset", pa.int64()),
        pa.field("timestamp", pa.timestamp("us", tz="UTC")),
    ]
)
# With option ``ranges=true`` the source yields one row per planned range instead of its records,
# and the scoring task reads the range itself (:func:`read_ranges`): the records then cross no
# Python -> JVM -> Python hop and no second Python worker per task (the source's read worker).
RANGE_SCHEMA = "topic string, partition int, start_offset bigint, end_offset bigint"
_KAFKA_PREFIX = "kafka."
_CHUNK = 20000

Offsets = dict[str, int]


class KafkaSourceError(RuntimeError):
    """The source cannot honour an offset range (e.g. data deleted by retention)."""


class BrokerUnavailable(KafkaSourceError):
    """The broker did not answer in time. The driver restarts the query from its checkpoint (the
    same offset ranges replay) with backoff, instead of planning around partitions it cannot see."""


def _outage_codes() -> set[int]:
    from confluent_kafka import KafkaError

    return {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE, KafkaError._TIMED_OUT}


def kafka_options(client_config: Mapping[str, object]) -> dict[str, str]:
    """librdkafka client config as ``kafka.*`` source options (the native connector's convention)."""
    return {f"{_KAFKA_PREFIX}{k}": str(v) for k, v in client_config.items()}


def _client_config(options: Mapping[str, str], **extra: object) -> dict[str, object]:
    config: dict[str, object] = {k[len(_KAFKA_PREFIX):]: v for k, v in options.items() if k.startswith(_KAFKA_PREFIX)}
    config.update(
        {
            "group.id": options.get("groupidprefix", "fraud-stream") + "-source",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "error",
            "fetch.wait.max.ms": 50,
        }
    )
    config.update(extra)
    return config


def _consumer(options: Mapping[str, str], **extra: object):
    from confluent_kafka import Consumer

    return Consumer(_client_config(options, **extra))


def split_limit(start: Offsets, end: Offsets, max_rows: int) -> Offsets:
    """Cap ``end`` so at most ``max_rows`` records are read, shared in proportion to each backlog."""
    backlog = {p: end[p] - start.get(p, end[p]) for p in end}
    total = sum(backlog.values())
    if total <= max_rows:
        return dict(end)
    shares = {p: backlog[p] * max_rows // total for p in end}
    remainder = max_rows - sum(shares.values())
    for p in sorted(end, key=lambda p: backlog[p] - shares[p], reverse=True):
        if remainder <= 0:
            break
        if shares[p] < backlog[p]:
            shares[p] += 1
            remainder -= 1
    return {p: start.get(p, end[p]) + shares[p] for p in end}


def replica_of(options: Mapping[str, str]) -> tuple[int, int]:
    """(index, count) from the ``replicaIndex``/``replicaCount`` options (Spark lower-cases names)."""
    return int(options.get("replicaindex", 0)), int(options.get("replicacount", 1))


def owned_partitions(partitions: list[int], index: int, count: int) -> list[int]:
    """Replica ``index`` of ``count`` reads partitions ``p % count == index``: replicas never overlap."""
    return [p for p in partitions if p % count == index]


class EndOffsetProbe:
    """Finds the true end offset of every partition from a Fetch response (see module docstring).

    Keeps one consumer between calls (the streaming planner calls it every trigger) and assigns it
    at the last known end: either partition-EOF comes back (nothing new) or data does, and then the
    high watermark of that Fetch response is the end. Only the first message of the new data is
    materialised, never the data itself (the executors read that).
    """

    def __init__(self, options: Mapping[str, str], topic: str, timeout: float) -> None:
        self.options = dict(options)
        self.topic = topic
        self.timeout = timeout
        self.replica = replica_of(self.options)
        self._consumer = None
        self.known: Offsets = {}

    def partitions(self) -> list[int]:
        """This replica's partitions of the topic (all of them for a single scorer)."""
        from confluent_kafka import KafkaException

        consumer = self._get()
        try:
            metadata = consumer.list_topics(self.topic, timeout=self.timeout).topics.get(self.topic)
        except KafkaException as error:
            raise BrokerUnavailable(f"no metadata for {self.topic!r} from {self.options.get('kafka.bootstrap.servers')}: {error}") from None
        if metadata is None or metadata.error is not None or not metadata.partitions:
            raise KafkaSourceError(f"topic {self.topic!r} does not exist (bootstrap {self.options.get('kafka.bootstrap.servers')})")
        return owned_partitions(sorted(metadata.partitions), *self.replica)

    def earliest(self) -> Offsets:
        consumer = self._get()
        from confluent_kafka import TopicPartition

        return {str(p): consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=self.timeout)[0] for p in self.partitions()}

    def end_offsets(self, floor: Offsets) -> Offsets:
        """True end per partition, never below ``floor`` (or the last end seen)."""
        from confluent_kafka import KafkaError, TopicPartition

        consumer = self._get()
        partitions = self.partitions()
        positions = {str(p): max(floor.get(str(p), 0), self.known.get(str(p), 0)) for p in partitions}
        consumer.assign([TopicPartition(self.topic, int(p), o) for p, o in positions.items()])
        ends = dict(positions)
        pending = set(positions)
        deadline = time.monotonic() + self.timeout
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(len(pending), timeout=0.05):
                error = msg.error()
                partition = str(msg.partition())
                if error is None:
                    high = consumer.get_watermark_offsets(TopicPartition(self.topic, msg.partition()), cached=True)[1]
                    ends[partition] = max(ends[partition], msg.offset() + 1, high)
                    pending.discard(partition)
                elif error.code() == KafkaError._PARTITION_EOF:
                    ends[partition] = max(ends[partition], msg.offset())
                    pending.discard(partition)
                elif error.code() == KafkaError.OFFSET_OUT_OF_RANGE:
                    raise KafkaSourceError(
                        f"{self.topic}[{partition}] offset {positions[partition]} is out of range "
                        "(deleted by retention, or the broker lost data / the topic was recreated)"
                    )
                elif error.code() in _outage_codes():
                    continue  # librdkafka reconnects; no answer before the deadline is reported below
                elif not error.retriable():
                    raise KafkaSourceError(f"{self.topic}[{partition}]: {error.str()}")
        if pending:
            # No answer is not "no data": planning a short end would let an available-now run exit
            # 0 with records unread. The driver retries from the checkpoint instead.
            raise BrokerUnavailable(f"{self.topic} partitions {sorted(pending, key=int)} gave neither data nor end-of-partition within {self.timeout:.0f}s")
        consumer.unassign()  # stop prefetching data the executors will read anyway
        self.known = dict(ends)
        return ends

    def _get(self):
        if self._consumer is None:
            # Small fetches: the probe needs a response's high watermark, not its records.
            self._consumer = _consumer(self.options, **{"max.partition.fetch.bytes": 65536})
        return self._consumer

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


class KafkaRange(InputPartition):
    """Exactly ``[start, end)`` of one Kafka partition."""

    def __init__(self, topic: str, partition: int, start: int, end: int) -> None:
        super().__init__((topic, partition, start, end))
        self.topic, self.partition, self.start, self.end = topic, partition, start, end


def messages_to_batch(messages: list) -> pa.RecordBatch:
    """confluent-kafka messages (no errors) as one Arrow batch in the source schema."""
    return pa.RecordBatch.from_pydict(
        {
            "key": [m.key() for m in messages],
            "value": [m.value() for m in messages],
            "topic": [m.topic() for m in messages],
            "partition": [m.partition() for m in messages],
            "offset": [m.offset() for m in messages],
            "timestamp": [m.timestamp()[1] * 1000 for m in messages],
        },
        schema=ARROW_SCHEMA,
    )


# Executor-side consumers kept between micro-batches (Python workers are reused), which saves a
# connection and its metadata per batch. Keyed by (options, topic, partition) -> (consumer, position
# it is assigned at or -1, last used); one idle for longer than IDLE_CONSUMER_SECONDS is closed, so
# a worker never keeps consumers of partitions, topics or brokers it no longer reads (they would
# hold threads and reconnect to a broker that is gone).
#
# After its range a consumer stays assigned - fetching the next range while the driver plans it -
# only if the partition has a backlog of at least PREFETCH_BACKLOG_RECORDS; otherwise it is
# unassigned. A caught-up consumer left assigned tails the topic, and on the embedded broker every
# fetch that returns data lists the partition's whole history (tansu's object-store engine): with
# every worker's consumers tailing, the broker took 36 % of a core after two minutes at 5k tx/s,
# and rising; unassigned, 4-6 %. (pause/resume would keep the assignment, but librdkafka starts
# fetching ~0.7 s after a resume; a new assignment fetches at once.)
_CONSUMERS: dict[tuple, tuple[object, int, float]] = {}
IDLE_CONSUMER_SECONDS = 120.0
PREFETCH_BACKLOG_RECORDS = 20_000


def close_consumers(idle_seconds: float = 0.0) -> None:
    """Close the consumers this process keeps between batches that were not used for at least
    ``idle_seconds`` (all of them by default: before their broker goes away, e.g. at the end of a
    test session that read ranges in-process)."""
    now = time.monotonic()
    for key in [key for key, (_, _, used) in _CONSUMERS.items() if now - used >= idle_seconds]:
        _CONSUMERS.pop(key)[0].close()


def _range_consumer(options: Mapping[str, str], part: KafkaRange):
    from confluent_kafka import TopicPartition

    close_consumers(IDLE_CONSUMER_SECONDS)
    key = (tuple(sorted((k, v) for k, v in options.items() if k.startswith(_KAFKA_PREFIX))), part.topic, part.partition)
    consumer, position, _ = _CONSUMERS.pop(key, (None, -1, 0.0))
    if consumer is None:
        consumer = _consumer(options)
    if position != part.start:
        consumer.assign([TopicPartition(part.topic, part.partition, part.start)])
    return key, consumer


def read_range(options: Mapping[str, str], part: KafkaRange, timeout: float) -> Iterator[pa.RecordBatch]:
    """Yield the records of ``part`` as Arrow batches; fail loudly rather than return a short range.

    ``consume`` never asks for more than the range's remainder, so the consumer ends exactly at
    ``part.end`` and, if it stays assigned, is already fetching the next range of this partition.
    """
    from confluent_kafka import KafkaError, TopicPartition

    key, consumer = _range_consumer(options, part)
    position, last_progress = part.start, time.monotonic()
    try:
        while position < part.end:
            wanted = []
            for msg in consumer.consume(min(_CHUNK, part.end - position), timeout=0.5):
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF or error.retriable() or error.code() in _outage_codes():
                        continue  # an outage surfaces as "stuck" below, once it outlasts the timeout
                    raise KafkaSourceError(f"{part.topic}[{part.partition}] at offset {position}: {error.str()}")
                if position <= msg.offset() < part.end:
                    wanted.append(msg)
                    position = msg.offset() + 1
            if wanted:
                last_progress = time.monotonic()
                yield messages_to_batch(wanted)
            elif time.monotonic() - last_progress > timeout:
                raise BrokerUnavailable(
                    f"{part.topic}[{part.partition}]: stuck at offset {position}, expected data up to {part.end} "
                    f"(no progress for {timeout:.0f}s)"
                )
    except BaseException:
        consumer.close()
        raise
    high = consumer.get_watermark_offsets(TopicPartition(part.topic, part.partition), cached=True)[1]
    if high - position < PREFETCH_BACKLOG_RECORDS:  # caught up (or high unknown, -1001): stop fetching
        consumer.unassign()
        position = -1
    _CONSUMERS[key] = (consumer, position, time.monotonic())


def read_ranges(options: Mapping[str, str], ranges: pa.Table, timeout: float) -> Iterator[pa.Table]:
    """The records of each ``RANGE_SCHEMA`` row, one table per range: the reading half of the
    source, run inside the task that processes the records (same consumer cache, same checks)."""
    for row in ranges.to_pylist():
        part = KafkaRange(row["topic"], row["partition"], row["start_offset"], row["end_offset"])
        yield pa.Table.from_batches(list(read_range(options, part, timeout)), schema=ARROW_SCHEMA)


def _ranges_only(options: Mapping[str, str]) -> bool:
    return any(str(k).lower() == "ranges" and str(v).lower() == "true" for k, v in options.items())


class KafkaStreamReader(DataSourceStreamReader, SupportsTriggerAvailableNow):
    """Planner side runs in Spark's long-lived source worker; ``read`` runs in executor workers."""

    def __init__(self, options: Mapping[str, str]) -> None:
        self.options = {str(k).lower(): v for k, v in options.items()}  # Spark lower-cases option names
        if "subscribe" not in self.options:
            raise KafkaSourceError("option 'subscribe' (the topic to read) is required")
        self.topic = self.options["subscribe"]
        self.timeout = float(self.options.get("eoftimeoutseconds", "10"))
        self.ranges_only = _ranges_only(self.options)
        max_rows = self.options.get("maxoffsetspertrigger")
        self.max_rows = int(max_rows) if max_rows else None
        self.probe = EndOffsetProbe(self.options, self.topic, self.timeout)
        self.target: Offsets | None = None
        self.last_end: Offsets = {}

    def initialOffset(self) -> Offsets:
        starting = self.options.get("startingoffsets", "earliest")
        if starting == "earliest":
            return self.probe.earliest()
        if starting == "latest":
            return self.probe.end_offsets({})
        return {str(p): int(o) for p, o in json.loads(starting).items()}

    def getDefaultReadLimit(self) -> ReadLimit:
        return ReadMaxRows(self.max_rows) if self.max_rows else ReadAllAvailable()

    def prepareForTriggerAvailableNow(self) -> None:
        self.target = self.probe.end_offsets({})

    def latestOffset(self, start: Offsets, limit: ReadLimit) -> Offsets:
        end = self.target if self.target is not None else self.probe.end_offsets(start)
        # Partitions added since the checkpoint start from 0; never move backwards.
        end = {p: max(o, start.get(p, 0)) for p, o in end.items()}
        start = {p: start.get(p, 0) for p in end}
        if isinstance(limit, ReadMaxRows):
            end = split_limit(start, end, limit.max_rows)
        self.last_end = end
        return end

    def reportLatestOffset(self) -> Offsets | None:
        return dict(self.probe.known) or None

    def partitions(self, start: Offsets, end: Offsets) -> list[KafkaRange]:
        return [
            KafkaRange(self.topic, int(p), start.get(p, 0), o)
            for p, o in sorted(end.items(), key=lambda item: int(item[0]))
            if o > start.get(p, 0)
        ]

    def read(self, partition: KafkaRange) -> Iterator:
        if self.ranges_only:
            return iter([(partition.topic, partition.partition, partition.start, partition.end)])
        return read_range(self.options, partition, self.timeout)

    def commit(self, end: Offsets) -> None:
        """Offsets live in Spark's checkpoint; nothing is committed to Kafka."""

    def stop(self) -> None:
        self.probe.close()


class KafkaDataSource(DataSource):
    """``spark.readStream.format("fraud_kafka").option("subscribe", topic).options(**kafka_options(cfg))``."""

    @classmethod
    def name(cls) -> str:
        return SOURCE_NAME

    def schema(self) -> str:
        return RANGE_SCHEMA if _ranges_only(self.options) else KAFKA_SCHEMA

    def streamReader(self, schema) -> KafkaStreamReader:
        return KafkaStreamReader(self.options)
