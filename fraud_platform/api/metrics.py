"""Prometheus metrics of one API worker process (each uvicorn worker serves its own /metrics).

Names share the ``fraud_api_`` prefix; the ops dashboards query these.
"""

from __future__ import annotations

import functools
import time
from contextlib import contextmanager
from typing import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _Outcome:
    def __init__(self) -> None:
        self.status = "500"

    def ok(self) -> None:
        self.status = "200"


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("fraud_api_requests_total", "Requests by endpoint and HTTP status", ["endpoint", "status"], registry=r)
        self.latency = Histogram("fraud_api_request_seconds", "Server-side request latency", ["endpoint"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.decisions = Counter("fraud_api_decisions_total", "Decisions by outcome", ["decision"], registry=r)
        self.decision_latency = Histogram("fraud_api_decision_seconds", "Request arrival to decision (queue, features, model, reasons)",
                                          buckets=_LATENCY_BUCKETS, registry=r)
        self.rejections = Counter("fraud_api_rejections_total", "Requests refused by validation rule", ["rule"], registry=r)
        self.auth_failures = Counter("fraud_api_auth_failures_total", "401/403 responses", ["status"], registry=r)
        self.rate_limited = Counter("fraud_api_rate_limited_total", "429 responses by key", ["key"], registry=r)
        self.batch_size = Histogram("fraud_api_batch_events", "Events decided per engine call (request coalescing)",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), registry=r)
        self.model_version = Gauge("fraud_api_model_version", "Champion version in use (1 for the current one)",
                                   ["model", "version"], registry=r)
        self.refresh_failures = Counter("fraud_api_champion_refresh_failures_total", "Failed champion refreshes", ["stage"], registry=r)
        self.decision_log_failures = Gauge("fraud_api_decision_log_write_failures", "Decision log flushes that failed and were retried", registry=r)

        # Labelled children looked up once: ``labels()`` per request was a third of the metrics' cost.
        self._requests = functools.lru_cache(maxsize=256)(self.requests.labels)
        self._latency = functools.lru_cache(maxsize=64)(self.latency.labels)
        self._decisions = functools.lru_cache(maxsize=16)(self.decisions.labels)

    @contextmanager
    def track(self, endpoint: str) -> Iterator[_Outcome]:
        outcome, started = _Outcome(), time.perf_counter()
        try:
            yield outcome
        except Exception as error:  # ApiError carries its HTTP status; anything else is a 500
            outcome.status = str(getattr(error, "status", 500))
            raise
        finally:
            self._requests(endpoint, outcome.status).inc()
            self._latency(endpoint).observe(time.perf_counter() - started)

    def decided(self, decisions: list[dict]) -> None:
        for d in decisions:
            self._decisions(d["decision"]).inc()
            self.decision_latency.observe(d["latency_ms"] / 1000)

    def model_loaded(self, name: str, version: str) -> None:
        self.model_version.clear()
        self.model_version.labels(name, version).set(1)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
