"""Analyst verdicts become labels on the ``labels`` topic, like chargebacks.

A verdict ``fraud`` is published as ``label_type=analyst_confirmed, is_fraud=true`` and
``legitimate`` as ``analyst_legitimate, is_fraud=false``, with ``known_at`` = the verdict time;
``unsure`` publishes nothing. The events are ordinary :class:`LabelEvent` JSON, so the existing
ingestion validates and lands them and the streaming feature pipeline applies them. Precedence
when labels are folded (``fraud_platform.processing.transform.fold_labels``): a chargeback beats an
analyst verdict whatever their order, otherwise the latest known label wins.

Publishing is an outbox: the verdict row is written first, then :class:`LabelPublisher` sends
every verdict whose label is not yet acknowledged by the broker, so a broker outage delays a label
but never loses it (the next verdict or the periodic retry sends it).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any

import orjson

from fraud_platform.domain.schema import LabelEvent

log = logging.getLogger(__name__)

LABEL_OF_VERDICT = {"fraud": ("analyst_confirmed", True), "legitimate": ("analyst_legitimate", False)}


def label_event(verdict: dict[str, Any]) -> LabelEvent | None:
    """The label a verdict row stands for (None for ``unsure``)."""
    if verdict["verdict"] not in LABEL_OF_VERDICT:
        return None
    label_type, is_fraud = LABEL_OF_VERDICT[verdict["verdict"]]
    return LabelEvent(transaction_id=verdict["transaction_id"], is_fraud=is_fraud, label_type=label_type,
                      known_at=datetime.fromisoformat(verdict["decided_at"]))


def label_json(event: LabelEvent) -> bytes:
    return orjson.dumps({**event.model_dump(mode="json"), "known_at": event.known_at.isoformat().replace("+00:00", "Z")})


class LabelPublisher:
    """Sends the store's unpublished verdict labels to the labels topic (keyed by transaction id)."""

    def __init__(self, store, kafka_settings, retry_seconds: float = 30.0) -> None:
        self.store, self.kafka_settings, self.topic = store, kafka_settings, kafka_settings.topics.labels
        self.producer = None  # made on first use: the API starts (and verdicts are kept) while no broker is reachable
        self.retry_seconds = retry_seconds
        self.errors = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="console-labels", daemon=True)
        self._thread.start()

    def publish_pending(self, timeout: float = 10.0) -> int:
        """Publish every pending verdict label; returns how many the broker acknowledged."""
        with self._lock:
            pending = self.store.unpublished_labels()
            if not pending:
                return 0
            if self.producer is None:
                from fraud_platform.infra.kafka import make_producer

                self.producer = make_producer(self.kafka_settings, **{"linger.ms": 0, "message.timeout.ms": 10000})
            delivered: list[str] = []

            def on_delivery(error, msg) -> None:
                if error is None:
                    delivered.append(msg.key().decode())
                else:
                    self.errors += 1
                    log.warning("label for %s not delivered (will retry): %s", msg.key(), error)

            for verdict in pending:
                event = label_event(verdict)
                self.producer.produce(self.topic, key=event.transaction_id.encode(), value=label_json(event), on_delivery=on_delivery)
            self.producer.flush(timeout)
            self.store.mark_published(delivered)
            if delivered:
                log.info("published %d analyst label(s) on %s", len(delivered), self.topic)
            return len(delivered)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.retry_seconds)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.publish_pending()
            except Exception as error:  # keep the outbox: retried on the next wake
                self.errors += 1
                log.warning("publishing analyst labels failed (will retry): %s", error)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=15)
        if self.producer is not None:
            self.producer.flush(5)
