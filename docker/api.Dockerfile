# syntax=docker/dockerfile:1
# The decision API (`fraud-platform serve`: FastAPI on uvicorn), deployed on its own.
# Build context: the repository root (docker-compose.yml: build.context ".",
# dockerfile "docker/api.Dockerfile"). It never imports Dagster; no Java is needed (the API does
# not start Spark).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/fraud_platform
COPY . /opt/fraud_platform
RUN pip install -c constraints.txt -e .

ENV FRAUD_PLATFORM_HOME=/var/lib/fraud_platform \
    FRAUD_API_HOST=0.0.0.0 \
    FRAUD_API_PORT=8080

RUN useradd --create-home --uid 10001 fraud \
    && mkdir -p /var/lib/fraud_platform \
    && chown -R fraud:fraud /var/lib/fraud_platform

USER fraud
EXPOSE 8080
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["python", "-m", "fraud_platform.api"]
