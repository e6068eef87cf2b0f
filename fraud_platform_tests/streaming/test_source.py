"""The Python Kafka source against the real embedded broker: true end offsets, exact ranges, limits."""

from __future__ import annotations

import pytest
from confluent_kafka import TopicPartition
from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadMaxRows

from fraud_platform.infra.kafka import make_consumer
from fraud_platform.settings import KafkaSettings
import pyarrow as pa

from spark_streaming.source import ARROW_SCHEMA, KafkaDataSource, KafkaRange, KafkaStreamReader, kafka_options, read_ranges, split_limit

from .conftest import produce

pytestmark = pytest.mark.slow


def reader(topic: str, **extra: str) -> KafkaStreamReader:
    return KafkaStreamReader({"subscribe": topic, **kafka_options(KafkaSettings.from_env().client_config()), **extra})


def test_latest_offset_is_the_true_end_although_list_offsets_under_reports(stream_env):
    topic = stream_env["FRAUD_TOPIC_TRANSACTIONS"]
    produce([(None, b"a" * 50)] * 1000, topic=topic)  # 500 per partition
    source = reader(topic)
    try:
        start = source.initialOffset()
        assert start == {"0": 0, "1": 0}
        assert source.latestOffset(start, ReadAllAvailable()) == {"0": 500, "1": 500}

        consumer = make_consumer(KafkaSettings.from_env(), "watermark-check")
        reported = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
        consumer.close()
        print(f"ListOffsets high watermark for 500 records: {reported}")  # tansu reports less

        produce([(None, b"b")] * 10, topic=topic)
        end = source.latestOffset({"0": 500, "1": 500}, ReadAllAvailable())
        assert end == {"0": 505, "1": 505}
        assert source.latestOffset(end, ReadAllAvailable()) == end  # nothing new: start returned as is
    finally:
        source.stop()


def test_partitions_read_exactly_their_range_and_rate_limit_caps_the_batch(stream_env):
    topic = stream_env["FRAUD_TOPIC_TRANSACTIONS"]
    produce([(str(i).encode(), f"v{i}".encode()) for i in range(400)], topic=topic)
    source = reader(topic, maxOffsetsPerTrigger="150")
    try:
        assert source.getDefaultReadLimit() == ReadMaxRows(150)
        start = {"0": 10, "1": 0}
        end = source.latestOffset(start, source.getDefaultReadLimit())
        assert sum(end[p] - start[p] for p in end) == 150
        parts = source.partitions(start, end)
        assert [(p.partition, p.start, p.end) for p in parts] == [(int(p), start[p], end[p]) for p in sorted(end)]
        for part in parts:
            batches = list(source.read(part))
            offsets = [o for b in batches for o in b.column("offset").to_pylist()]
            assert offsets == list(range(part.start, part.end))
            assert {b.schema.names == ["key", "value", "topic", "partition", "offset", "timestamp"] for b in batches} == {True}
        # Spark may call with ReadAllAvailable (available-now), which must ignore the option.
        assert source.latestOffset(start, ReadAllAvailable()) == {"0": 200, "1": 200}
        assert list(source.read(KafkaRange(topic, 0, 5, 5))) == []

        # Ranges only (the scorer): the source yields each planned range, the task reads its records.
        ranged = reader(topic, maxOffsetsPerTrigger="150", ranges="true")
        assert KafkaDataSource({"ranges": "true"}).schema().startswith("topic string, partition int, start_offset")
        rows = [row for part in ranged.partitions(start, end) for row in ranged.read(part)]
        assert rows == [(topic, p.partition, p.start, p.end) for p in parts]
        table = pa.Table.from_pylist([dict(zip(["topic", "partition", "start_offset", "end_offset"], r)) for r in rows])
        tables = list(read_ranges(ranged.options, table, 10.0))
        assert [t.schema for t in tables] == [ARROW_SCHEMA] * len(parts)
        assert [t.column("offset").to_pylist() for t in tables] == [list(range(p.start, p.end)) for p in parts]
        assert [set(t.column("partition").to_pylist()) for t in tables] == [{p.partition} for p in parts]
    finally:
        source.stop()


def test_available_now_target_is_fixed_when_prepared(stream_env):
    topic = stream_env["FRAUD_TOPIC_TRANSACTIONS"]
    produce([(None, b"x")] * 20, topic=topic)
    source = reader(topic)
    try:
        source.prepareForTriggerAvailableNow()
        produce([(None, b"y")] * 20, topic=topic)
        assert source.latestOffset({"0": 0, "1": 0}, ReadAllAvailable()) == {"0": 10, "1": 10}
    finally:
        source.stop()


def test_split_limit_shares_the_budget_by_backlog():
    assert split_limit({"0": 0, "1": 0}, {"0": 90, "1": 10}, 50) == {"0": 45, "1": 5}
    assert split_limit({"0": 0, "1": 0}, {"0": 3, "1": 4}, 100) == {"0": 3, "1": 4}
    capped = split_limit({"0": 5, "1": 0, "2": 7}, {"0": 10, "1": 10, "2": 10}, 7)
    assert sum(capped[p] - {"0": 5, "1": 0, "2": 7}[p] for p in capped) == 7


def test_cached_range_consumers_are_reused_and_closed_once_idle(stream_env, monkeypatch):
    """Python workers keep a consumer per partition between batches, but not forever: one whose
    partition was not read for IDLE_CONSUMER_SECONDS is closed (it would otherwise keep its threads
    and reconnect to a broker that may be long gone)."""
    import spark_streaming.source as source_module

    topic = stream_env["FRAUD_TOPIC_TRANSACTIONS"]
    produce([(str(i).encode(), f"v{i}".encode()) for i in range(40)], topic=topic)
    options = reader(topic).options
    monkeypatch.setattr(source_module, "_CONSUMERS", {})

    def read(partition: int, start: int, end: int) -> list[int]:
        return [o for b in source_module.read_range(options, KafkaRange(topic, partition, start, end), 10.0)
                for o in b.column("offset").to_pylist()]

    assert read(0, 0, 10) == list(range(10))
    [(first, position, _)] = source_module._CONSUMERS.values()
    # Caught up (less than PREFETCH_BACKLOG_RECORDS left): cached unassigned, so it does not tail the topic.
    assert position == -1 and first.assignment() == []
    monkeypatch.setattr(source_module, "PREFETCH_BACKLOG_RECORDS", 5)
    assert read(0, 10, 12) == [10, 11]
    [(consumer, position, _)] = source_module._CONSUMERS.values()
    # A backlog (the partition holds >= 20 records): it stays assigned, already fetching the next range.
    assert consumer is first and position == 12 and [tp.partition for tp in first.assignment()] == [0]
    assert read(0, 12, 20) == list(range(12, 20))
    assert read(0, 5, 8) == [5, 6, 7]  # any start, not only where the last range ended
    assert [c for c, _, _ in source_module._CONSUMERS.values()] == [first]  # the same consumer all along

    monkeypatch.setattr(source_module, "IDLE_CONSUMER_SECONDS", 0.0)
    assert read(1, 0, 5) == list(range(5))  # partition 0's consumer has been idle: closed
    assert [key[2] for key in source_module._CONSUMERS] == [1]
    with pytest.raises(RuntimeError, match="closed"):
        first.assignment()
