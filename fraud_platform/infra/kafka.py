"""Kafka clients built from the one shared :class:`KafkaSettings`, plus topic administration.

Works unchanged against the embedded broker, the docker-compose Apache Kafka, or a managed cluster
(SASL settings from env). Two embedded-broker quirks are designed around here: ListOffsets can
under-report the end offset, so "read to the end" uses partition-EOF events (which come from the
Fetch response's high watermark); and topics must exist before consumers assign partitions.
"""

from __future__ import annotations

import time
from typing import Iterable

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from fraud_platform.settings import KafkaSettings


# Every write the platform makes is acknowledged by all in-sync replicas and deduplicated on retry;
# callers may tune batching, never weaken these.
DURABLE_PRODUCER = {"acks": "all", "enable.idempotence": True}


def make_producer(settings: KafkaSettings, **overrides: object) -> Producer:
    """A throughput-oriented, idempotent producer (acks=all, lz4, batching)."""
    weakened = {k: v for k, v in overrides.items() if k in DURABLE_PRODUCER and str(v).lower() not in {str(DURABLE_PRODUCER[k]).lower(), "-1"}}
    if weakened:
        raise ValueError(f"producer settings {weakened} would weaken durability; the platform always uses {DURABLE_PRODUCER}")
    config = {
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 20,
        "batch.num.messages": 10000,
        "queue.buffering.max.messages": 500000,
        "compression.type": "lz4",
    }
    config.update(overrides)
    return Producer(settings.client_config(**config))


def make_consumer(settings: KafkaSettings, group_id: str, **overrides: object) -> Consumer:
    """A consumer for explicit assign/seek use: offsets are owned by the caller, never auto-committed."""
    config = {
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "fetch.max.bytes": 52428800,
        "max.partition.fetch.bytes": 10485760,
    }
    config.update(overrides)
    return Consumer(settings.client_config(**config))


def make_admin(settings: KafkaSettings) -> AdminClient:
    return AdminClient(settings.client_config())


def ensure_topics(settings: KafkaSettings, names: Iterable[str] | None = None, partitions: int | None = None, timeout: float = 15.0) -> dict[str, int]:
    """Create the platform's topics if missing, with the configured replication factor and
    min.insync.replicas; returns {topic: partition count}."""
    topics = settings.topics
    wanted = list(names or (topics.transactions, topics.transactions_dlq, topics.labels, topics.labels_dlq, topics.predictions))
    admin = make_admin(settings)
    existing = admin.list_topics(timeout=timeout).topics
    missing = [
        NewTopic(t, partitions or topics.partitions, topics.replication_factor, config={"min.insync.replicas": str(topics.min_insync_replicas)})
        for t in wanted
        if t not in existing
    ]
    if missing:
        for topic, future in admin.create_topics(missing, operation_timeout=timeout).items():
            try:
                future.result(timeout)
            except KafkaException as error:
                if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
    metadata = admin.list_topics(timeout=timeout).topics
    return {t: len(metadata[t].partitions) for t in wanted if t in metadata}


def topic_partitions(settings: KafkaSettings, topic: str, timeout: float = 15.0) -> list[int]:
    metadata = make_admin(settings).list_topics(topic, timeout=timeout).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise RuntimeError(f"topic {topic!r} does not exist on {settings.resolved_bootstrap()}")
    return sorted(metadata.partitions)



def read_range(
    settings: KafkaSettings,
    topic: str,
    start_offsets: dict[int, int],
    max_messages: int | None = None,
    idle_timeout: float = 5.0,
    batch_size: int = 20000,
) -> Iterable[tuple[list, dict[int, int]]]:
    """Read ``topic`` from ``start_offsets`` up to the end each partition had when we reached it.

    Yields (messages, next_offsets) chunks; next_offsets is the per-partition position after the
    chunk. The end is detected by partition-EOF (the Fetch response's high watermark), not by
    ListOffsets, which under-reports on the embedded broker. A partition is done at its first EOF,
    so a run lands a snapshot even while producers keep writing.
    """
    consumer = make_consumer(settings, group_id=f"fraud-platform-reader-{topic}")
    try:
        consumer.assign([TopicPartition(topic, p, o) for p, o in start_offsets.items()])
        positions = dict(start_offsets)
        pending = set(start_offsets)
        seen = 0
        idle_since = time.monotonic()
        while pending:
            # A short timeout: consume() otherwise blocks until the batch is full.
            msgs = consumer.consume(batch_size, timeout=0.2)
            if not msgs:
                if time.monotonic() - idle_since > idle_timeout:
                    raise TimeoutError(
                        f"no data and no end-of-partition from {topic} partitions {sorted(pending)} "
                        f"for {idle_timeout}s; is the broker at {settings.resolved_bootstrap()} healthy?"
                    )
                continue
            idle_since = time.monotonic()
            chunk = []
            for msg in msgs:
                partition = msg.partition()
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(partition)
                        continue
                    raise KafkaException(error)
                if partition not in pending:
                    continue  # arrived after this partition's end was reached; next run lands it
                chunk.append(msg)
                positions[partition] = msg.offset() + 1
            if chunk:
                seen += len(chunk)
                yield chunk, dict(positions)
            if max_messages is not None and seen >= max_messages:
                break
    finally:
        consumer.close()
