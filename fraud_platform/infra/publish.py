"""Producing events to Kafka: the simulator's stream (imported history: ``history_import``).

Both paths only *produce*; landing (and the streaming scorer) validates and dead-letters, so
imported and simulated records face exactly the same rules (the importer also runs the same
validators beforehand, to summarise a file before producing it).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Iterable

from fraud_platform.infra.kafka import ensure_topics, make_producer
from fraud_platform.settings import KafkaSettings

log = logging.getLogger(__name__)


@dataclass
class PublishReport:
    """What was produced, per topic, plus the simulator's invalid-record injection counts."""

    produced: dict[str, int] = field(default_factory=dict)
    injected_invalid: dict[str, int] = field(default_factory=dict)
    expected_valid_transactions: int = 0
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.produced.values())

    @property
    def rate(self) -> float:
        return self.total / self.seconds if self.seconds else 0.0


class RateLimitedProducer:
    """Produce (key, value) pairs at a target rate (None = as fast as possible), counting per topic."""

    def __init__(self, settings: KafkaSettings, rate: float | None = None) -> None:
        self.producer = make_producer(settings)
        self.rate = rate
        self.counts: dict[str, int] = {}
        self.errors: list[str] = []
        self._started = time.monotonic()
        self._sent = 0

    def _on_delivery(self, error, _msg) -> None:
        if error is not None:
            self.errors.append(str(error))

    def send(self, topic: str, messages: Iterable[tuple[bytes, bytes | None]]) -> None:
        produce, poll = self.producer.produce, self.producer.poll
        count = 0
        for key, value in messages:
            while True:
                try:
                    produce(topic, value=value, key=key, on_delivery=self._on_delivery)
                    break
                except BufferError:
                    poll(0.05)
            count += 1
            self._sent += 1
            if self._sent % 1000 == 0:
                poll(0)
                if self.rate:
                    ahead = self._sent / self.rate - (time.monotonic() - self._started)
                    if ahead > 0:
                        time.sleep(ahead)
        self.counts[topic] = self.counts.get(topic, 0) + count

    def close(self, timeout: float = 120.0) -> None:
        """Flush, then release the client (a live idle producer keeps reconnecting and logging)."""
        remaining = self.producer.flush(timeout)
        self.producer.close()
        self.producer = None
        if remaining or self.errors:
            raise RuntimeError(f"{remaining} message(s) not delivered; first errors: {self.errors[:3]}")


def publish_simulation(
    settings: KafkaSettings,
    simulator,
    rate: float | None = None,
    inject_invalid_rate: float = 0.0,
    seed: int = 0,
) -> PublishReport:
    """Stream a simulation window to the transactions and labels topics, day by day."""
    from fraud_platform.domain.bad_records import inject_invalid

    topics = settings.topics
    ensure_topics(settings)
    producer = RateLimitedProducer(settings, rate)
    report = PublishReport()
    started = time.monotonic()
    for day_events in simulator.iter_days():
        transactions = day_events.transactions
        if inject_invalid_rate > 0:
            transactions, injection = inject_invalid(transactions, inject_invalid_rate, seed + day_events.day.toordinal())
            for rule, count in injection.by_rule.items():
                report.injected_invalid[rule] = report.injected_invalid.get(rule, 0) + count
            report.expected_valid_transactions += injection.expected_valid
        else:
            report.expected_valid_transactions += len(transactions)
        producer.send(topics.transactions, transactions)
        producer.send(topics.labels, day_events.labels)
        log.info("simulated %s: %d transactions, %d labels", day_events.day, len(transactions), len(day_events.labels))
    producer.close()
    report.produced = dict(producer.counts)
    report.seconds = time.monotonic() - started
    return report
