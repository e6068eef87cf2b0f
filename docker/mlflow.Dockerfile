# syntax=docker/dockerfile:1
# MLflow tracking + model registry server for the compose deployment: PostgreSQL backend store
# (psycopg2) and artifacts proxied to MinIO/S3 (boto3). Same MLflow version as the platform,
# pinned by the repository's constraints.txt. Build context: the repository root.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY constraints.txt /tmp/constraints.txt
RUN pip install -c /tmp/constraints.txt mlflow psycopg2-binary boto3 \
    && python -c "import mlflow, psycopg2, boto3" \
    && useradd --create-home --uid 10001 mlflow

USER mlflow
EXPOSE 5000
# Everything else (backend store URI, artifact destination, allowed hosts) comes from env vars
# set in docker-compose.yml: MLFLOW_BACKEND_STORE_URI, MLFLOW_ARTIFACTS_DESTINATION, ...
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000", "--serve-artifacts"]
