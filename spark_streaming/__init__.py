"""The separately deployed Spark Structured Streaming scorer (``python -m spark_streaming``).

Depends only on fraud_platform.domain / infra / settings / ml — never on Dagster — so it ships as
its own image and scores with whichever model the platform publishes under the ``champion`` alias.
"""
