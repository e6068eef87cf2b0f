# syntax=docker/dockerfile:1
# One image for every Dagster process of the compose deployment (code-location gRPC server,
# webserver, daemon, one-shot instance init) and for the Spark worker: PySpark needs the same
# Python minor version and libraries on the executors as on the driver, so the worker runs
# from this image too (see docs/deployment.md).
#
# Debian bookworm is pinned on purpose: it is the newest Debian that still ships OpenJDK 17,
# the JVM that Spark 4 and the pinned pyspark are tested with.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps tini \
    && rm -rf /var/lib/apt/lists/* \
    # A stable JAVA_HOME whatever the CPU architecture (amd64/arm64 JVM folders differ).
    && ln -s "$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")" /opt/java

ENV JAVA_HOME=/opt/java \
    SPARK_HOME=/usr/local/lib/python3.11/site-packages/pyspark \
    PATH=/usr/local/lib/python3.11/site-packages/pyspark/bin:/usr/local/lib/python3.11/site-packages/pyspark/sbin:$PATH \
    PYSPARK_PYTHON=/usr/local/bin/python \
    PYSPARK_DRIVER_PYTHON=/usr/local/bin/python

WORKDIR /opt/fraud_platform

# Dependencies are pinned by constraints.txt (the same pins CI installs). The build context is
# the repository root, filtered by .dockerignore. Editable install: the code finds repository
# folders next to its package (dbt/ via fraud_platform.warehouse.DBT_PROJECT_DIR, deploy/), which
# a site-packages install would not have (site-packages/dbt is dbt-core itself).
COPY . /opt/fraud_platform
RUN pip install -c constraints.txt -e . \
    && python -c "import fraud_platform, dagster, pyspark, dagster_postgres, psycopg2"

# s3a for Spark on the MinIO lake: hadoop-aws of the Hadoop version pyspark ships (a test checks
# this), resolved at build time straight into pyspark's jars folder, so the driver (dagster-code)
# and the executors (spark-worker, same image) have it on the classpath; plus the s3a settings.
ARG HADOOP_VERSION=3.5.0
RUN python docker/bake_spark_packages.py "org.apache.hadoop:hadoop-aws:${HADOOP_VERSION}" "${SPARK_HOME}/jars" \
    && ls "${SPARK_HOME}/jars" | grep -q "hadoop-aws-${HADOOP_VERSION}.jar" \
    && mkdir -p "${SPARK_HOME}/conf" \
    && cp deploy/spark/spark-defaults.conf "${SPARK_HOME}/conf/spark-defaults.conf"

# The Dagster instance (Postgres storage, queued runs, pools); an unprivileged user that owns the
# instance folder, the platform data folder and dbt's target/ and logs/ in the project folder.
ENV DAGSTER_HOME=/opt/dagster/dagster_home \
    FRAUD_PLATFORM_ENV=docker \
    FRAUD_PLATFORM_HOME=/var/lib/fraud_platform
RUN mkdir -p "$DAGSTER_HOME/storage" /var/lib/fraud_platform \
    && cp deploy/dagster.yaml "$DAGSTER_HOME/dagster.yaml" \
    && useradd --create-home --uid 10001 fraud \
    && mkdir -p /opt/fraud_platform/dbt/target /opt/fraud_platform/dbt/logs \
    && chown -R fraud:fraud /opt/dagster /var/lib/fraud_platform /opt/fraud_platform/dbt

USER fraud
EXPOSE 3000 4000
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "fraud_platform.definitions", "--location-name", "fraud_platform"]
