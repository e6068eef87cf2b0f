"""One place that builds a SparkSession with settings that work on a 2-core machine and on the
docker-compose cluster. Used by the Dagster Spark resource and the streaming scorer."""

from __future__ import annotations

import os
import sys

from fraud_platform.settings import SparkSettings
from fraud_platform.security import HADOOP_UMASK_MODE, executor_env_conf

DEFAULT_LOCAL_CONF: dict[str, str] = {
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "4",
    "spark.ui.enabled": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    "spark.driver.memory": "2g",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.python.worker.reuse": "true",
    # Hadoop's local file system chmods what it writes from this mask, not the process umask:
    # without it Spark's Parquet, checkpoints and .crc files are world-readable (0644/0755).
    "spark.hadoop.fs.permissions.umask-mode": HADOOP_UMASK_MODE,
}


def build_spark_session(app_name: str, master: str | None = None, conf: dict[str, str] | None = None):
    """Get or create the process's SparkSession; workers run the same interpreter as the driver.
    ``master`` defaults to ``SparkSettings.master`` (FRAUD_SPARK_MASTER), the one default."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name).master(master or SparkSettings.from_env().master)
    for key, value in {**DEFAULT_LOCAL_CONF, **executor_env_conf(), **(conf or {})}.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
