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
