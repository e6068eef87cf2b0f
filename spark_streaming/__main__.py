"""``python -m spark_streaming``: command-line entry of the streaming scorer
(``python -m spark_streaming features``: the streaming feature pipeline, see feature_pipeline.py).

Flags override FRAUD_STREAM_* env vars. Start-up problems (bad config, broker down, no champion,
alert store or online feature store unreachable, missing connector) print one line to stderr and exit
with a distinct code: 2 config, 3 broker, 4 model/registry, 5 alert store, 6 Spark/connector,
7 online feature store, 1 query failure.
"""

from __future__ import annotations

import argparse
import logging
import sys

from spark_streaming import configure_logging


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m spark_streaming", description="Score live Kafka transactions with the MLflow champion.")
    parser.add_argument("--checkpoint", help="Spark checkpoint folder (FRAUD_STREAM_CHECKPOINT)")
    parser.add_argument("--trigger-seconds", type=float, help="micro-batch interval (FRAUD_STREAM_TRIGGER_SECONDS)")
    parser.add_argument("--max-offsets-per-trigger", type=int, help="rate limit per micro-batch (FRAUD_STREAM_MAX_OFFSETS_PER_TRIGGER)")
    parser.add_argument("--available-now", action="store_true", default=None, help="process what is in the topic now, then exit")
    parser.add_argument("--max-batches", type=int, help="stop after this many micro-batches")
    parser.add_argument("--metrics-port", type=int, help="Prometheus port, 0 = off (FRAUD_STREAM_METRICS_PORT)")
    parser.add_argument("--source", choices=["python", "native"], help="Kafka source implementation (FRAUD_STREAM_SOURCE)")
    parser.add_argument("--starting-offsets", choices=["earliest", "latest"], help="where a new checkpoint starts")
    parser.add_argument("--model-refresh-seconds", type=float, help="champion alias check interval")
    parser.add_argument("--spark-master", help="Spark master (FRAUD_SPARK_MASTER), default local[*]")
    parser.add_argument("--replica-index", type=int, help="this scorer's index among --replica-count replicas (FRAUD_STREAM_REPLICA_INDEX)")
    parser.add_argument("--replica-count", type=int, help="scorers splitting the topic's partitions (FRAUD_STREAM_REPLICA_COUNT)")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["features"]:  # the streaming feature pipeline (its own query and checkpoint)
        from spark_streaming.feature_pipeline import main as features_main

        return features_main(argv[1:])
    args = parse_args(argv)
    configure_logging(args.log_level)

    from spark_streaming.config import StreamConfig
    from spark_streaming.job import run, run_cli

    overrides = {k: v for k, v in vars(args).items() if k != "log_level"}
    code, handler = run_cli("spark_streaming", lambda: run(StreamConfig.load(overrides)))
    if handler is not None:
        logging.getLogger("spark_streaming").info("stopped after %d micro-batches (last batch id %s)", handler.batches, handler.last_batch_id)
    return code


if __name__ == "__main__":
    sys.exit(main())
