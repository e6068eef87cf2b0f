"""Builds the console's parts from the platform settings for the API process
(``fraud_platform.api.server`` calls :meth:`Console.from_settings` and :meth:`Console.mount`)."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from fastapi import FastAPI

from fraud_platform.console.store import ConsoleStore
from fraud_platform.console.web import mount_console
from fraud_platform.settings import ConsoleSettings, PlatformSettings

log = logging.getLogger("fraud_platform.console")


def registry_facts(client, model_name: str) -> dict[str, Any]:
    """Champion (version, when its alias last moved, test metrics) and challenger, from the registry."""
    from mlflow.exceptions import MlflowException

    from fraud_platform.ml.registry import CHALLENGER_ALIAS, CHAMPION_ALIAS, TAG_METRIC_PREFIX, TAG_REASON, TAG_SCORE_SHARES

    facts: dict[str, Any] = {}
    for alias in (CHAMPION_ALIAS, CHALLENGER_ALIAS):
        try:
            mv = client.get_model_version_by_alias(model_name, alias)
        except MlflowException:
            continue
        tags = mv.tags or {}
        facts[alias] = {
            "name": model_name, "version": str(mv.version),
            "promoted_at": datetime.fromtimestamp((mv.last_updated_timestamp or mv.creation_timestamp) / 1000, timezone.utc).isoformat(timespec="seconds"),
            "reason": tags.get(TAG_REASON, ""),
            "score_shares": tags.get(TAG_SCORE_SHARES),
            "metrics": {k[len(TAG_METRIC_PREFIX):]: float(v) for k, v in tags.items()
                        if k.startswith(TAG_METRIC_PREFIX) and k[len(TAG_METRIC_PREFIX):] in ("average_precision", "roc_auc", "card_precision_at_100")},
        }
    shares = facts.get(CHAMPION_ALIAS, {}).pop("score_shares", None)
    if shares:
        facts["training_histogram"] = json.loads(shares)
    return facts


def dead_letters_by_day(kafka_settings, max_messages: int = 20_000) -> list[dict[str, Any]]:
    """Dead letters per day, topic and rule, from the DLQ topics' headers (the first ``max_messages`` of each)."""
    from fraud_platform.infra.dead_letters import parse_dead_letter_headers
    from fraud_platform.infra.kafka import read_range, topic_partitions

    counts: Counter = Counter()
    for topic in (kafka_settings.topics.transactions_dlq, kafka_settings.topics.labels_dlq):
        try:
            partitions = topic_partitions(kafka_settings, topic, timeout=3)
        except RuntimeError:
            continue  # no such topic yet: no dead letters
        for chunk, _ in read_range(kafka_settings, topic, {p: 0 for p in partitions}, max_messages=max_messages, idle_timeout=3):
            for msg in chunk:
                h = parse_dead_letter_headers(msg.headers())
                counts[(h.get("failed_at", "")[:10], topic, h.get("error.rule", "?"))] += 1
    return [{"day": d, "topic": t, "rule": r, "count": n} for (d, t, r), n in sorted(counts.items(), reverse=True)]


@dataclass
class Console:
    settings: ConsoleSettings
    platform: PlatformSettings
    store: ConsoleStore
    publisher: Any  # LabelPublisher | None

    @classmethod
    def from_settings(cls, platform: PlatformSettings, decision_log) -> "Console":
        settings = ConsoleSettings.from_env()
        store = ConsoleStore(decision_log)
        publisher = None
        if settings.publish_labels:
            from fraud_platform.console.labels import LabelPublisher

            publisher = LabelPublisher(store, platform.kafka, settings.label_retry_seconds)
        return cls(settings, platform, store, publisher)

    def mount(self, app: FastAPI, keys) -> None:
        from mlflow import MlflowClient

        platform = self.platform

        def registry() -> dict[str, Any]:
            client = MlflowClient(platform.mlflow.tracking_uri, platform.mlflow.resolved_registry_uri)
            return registry_facts(client, platform.mlflow.model_name)

        mount_console(
            app, keys=keys, store=self.store, registry=registry,
            dead_letters=lambda: dead_letters_by_day(platform.kafka),
            on_verdict=self.publisher.wake if self.publisher else (lambda: None),
            session_secret=self.settings.session_secret.get_secret_value().encode() if self.settings.session_secret else None,
            session_hours=self.settings.session_hours, refresh_seconds=self.settings.refresh_seconds,
        )

    def close(self) -> None:
        if self.publisher is not None:
            self.publisher.close()
