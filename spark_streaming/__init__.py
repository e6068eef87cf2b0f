"""The separately deployed Spark Structured Streaming scorer (``python -m spark_streaming``).

Depends only on fraud_platform.domain / infra / settings / ml — never on Dagster — so it ships as
its own image and scores with whichever model the platform publishes under the ``champion`` alias.
"""

import logging
import sys


def configure_logging(level: str = "INFO") -> None:
    """The streaming jobs' log format (the benchmark parses its batch lines) on stderr; libraries'
    chatter at WARNING."""
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("py4j", "mlflow", "urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def close_cached_clients() -> None:
    """Close the clients this process keeps between tasks, if it ran any in-process (the source's
    range consumers; the scoring task's producer, store and database connections): before their
    servers stop, or the cached Kafka clients keep reconnecting and logging."""
    source, executor = sys.modules.get("spark_streaming.source"), sys.modules.get("spark_streaming.executor")
    if source is not None:
        source.close_consumers()
    if executor is not None:
        executor.close_clients()
