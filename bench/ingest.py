"""Ingestion benchmark: simulate → Kafka → raw Parquet for N transactions on the embedded broker.

    .venv/bin/python bench/ingest.py [--transactions 1000000]

Prints msgs/s per stage and peak RSS as a table, with the machine noted. Targets on 2 cores:
≥ 50k msgs/s produced, ≥ 50k msgs/s landed. Not a test: numbers go in notes, not assertions.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_line, measured, print_table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transactions", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=25_000)
    parser.add_argument("--terminals", type=int, default=50_000)
    args = parser.parse_args()

    os.environ["FRAUD_PLATFORM_HOME"] = tempfile.mkdtemp(prefix="bench-ingest-")
    from fraud_platform.domain.simulator import SimulationConfig, TransactionSimulator
    from fraud_platform.infra.broker import EmbeddedBroker
    from fraud_platform.infra.kafka import ensure_topics
    from fraud_platform.infra.landing import LandingEngine
    from fraud_platform.infra.landing_specs import transactions_spec
    from fraud_platform.infra.lake import LocalLakeStore
    from fraud_platform.infra.publish import RateLimitedProducer
    from fraud_platform.settings import PlatformSettings

    print(f"machine: {machine_line()}")
    broker = EmbeddedBroker.default()
    broker.start()
    try:
        settings = PlatformSettings.from_env()
        ensure_topics(settings.kafka)
        topic = settings.kafka.topics.transactions

        # Stage 1: simulate + encode only (the producer's input side).
        with measured() as simulate_stage:
            simulator = TransactionSimulator(SimulationConfig(date(2026, 1, 1), 400, n_customers=args.customers, n_terminals=args.terminals))
            messages: list[tuple[bytes, bytes]] = []
            for day_events in simulator.iter_days():
                messages.extend(day_events.transactions)
                if len(messages) >= args.transactions:
                    break
            messages = messages[: args.transactions]
        n = len(messages)

        # Stage 2: produce to Kafka (acks=all, idempotent), delivery confirmed.
        with measured() as produce_stage:
            producer = RateLimitedProducer(settings.kafka)
            producer.send(topic, messages)
            producer.close()
        del messages

        # Stage 3: land Kafka → validated raw Parquet with manifests.
        store = LocalLakeStore(settings.lake.root)
        with measured() as land_stage:
            result = LandingEngine(store, settings.kafka, transactions_spec(settings.kafka.topics)).land()
        assert result.consumed == n, (result.consumed, n)

        simulate_and_produce = simulate_stage.seconds + produce_stage.seconds
        print_table(
            f"Ingestion of {n:,} transactions (embedded tansu broker, {settings.kafka.topics.partitions} partitions)",
            ["stage", "seconds", "msgs/s", "peak RSS MiB", "target"],
            [
                ["simulate + JSON encode", simulate_stage.seconds, n / simulate_stage.seconds, simulate_stage.peak_rss_mib, ""],
                ["produce to Kafka", produce_stage.seconds, n / produce_stage.seconds, produce_stage.peak_rss_mib, ""],
                ["simulate → Kafka (total)", simulate_and_produce, n / simulate_and_produce, max(simulate_stage.peak_rss_mib, produce_stage.peak_rss_mib), "≥ 50,000/s"],
                ["Kafka → raw Parquet (validate, land)", land_stage.seconds, n / land_stage.seconds, land_stage.peak_rss_mib, "≥ 50,000/s"],
            ],
        )
        print(f"\nlanded {result.valid:,} valid + {result.dead_lettered:,} dead-lettered in {len(result.batches)} batches")
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
