"""fraud_platform: a fraud-detection data platform on Dagster software-defined assets.

This package root deliberately imports nothing heavy: ``fraud_platform.domain`` and
``fraud_platform.infra`` are Dagster-free so the separately deployed ``spark_streaming`` job can
import them. The Dagster code location lives in ``fraud_platform.definitions``.
"""

__version__ = "0.1.0"
