"""Prometheus metrics of the scorer (served by ``prometheus_client`` on FRAUD_STREAM_METRICS_PORT).

The end-to-end latency histogram is observed once per transaction; at tens of thousands of rows
per batch it is filled with one vectorised bucket count instead of a Python call per row.
"""

from __future__ import annotations

import threading

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server
from prometheus_client.core import HistogramMetricFamily

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class BulkHistogram:
    """A histogram that accepts a whole array of observations at once."""

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...]) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = np.asarray(buckets, dtype="float64")
        self._counts = np.zeros(len(buckets) + 1, dtype="int64")
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe_many(self, values: np.ndarray) -> None:
        if len(values) == 0:
            return
        index = np.searchsorted(self.bounds, values, side="left")
        counts = np.bincount(index, minlength=len(self.bounds) + 1)
        with self._lock:
            self._counts += counts
            self._sum += float(np.sum(values))

    def add_counts(self, counts: np.ndarray, total: float) -> None:
        """Merge bucket counts computed elsewhere (executor tasks) with the same bounds."""
        with self._lock:
            self._counts += np.asarray(counts, dtype="int64")
            self._sum += float(total)

    def collect(self):
        with self._lock:
            cumulative = np.cumsum(self._counts)
            total = self._sum
        buckets = [(repr(float(b)), int(c)) for b, c in zip(self.bounds, cumulative[:-1])] + [("+Inf", int(cumulative[-1]))]
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], buckets, total)
        yield family

    def quantile(self, q: float) -> float:
        """Bucket upper bound below which a fraction ``q`` of observations fall (for logs/tests)."""
        cumulative = np.cumsum(self._counts)
        if cumulative[-1] == 0:
            return float("nan")
        index = int(np.searchsorted(cumulative, q * cumulative[-1]))
        return float(self.bounds[index]) if index < len(self.bounds) else float("inf")


class StreamMetrics:
    """All scorer metrics in one registry (a private one per instance keeps tests independent)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.rows = Counter("fraud_stream_rows", "Records processed, by outcome (scored|dead_lettered)", ["outcome"], registry=r)
        self.decisions = Counter("fraud_stream_decisions", "Scored transactions by decision", ["decision"], registry=r)
        self.dead_letters = Counter("fraud_stream_dead_letters", "Records sent to the DLQ, by rule", ["rule"], registry=r)
        self.batches = Counter("fraud_stream_batches", "Micro-batches committed", registry=r)
        self.batch_seconds = Histogram(
            "fraud_stream_batch_duration_seconds", "Wall time of foreachBatch (validate, score, sinks)",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60), registry=r,
        )
        self.latency = BulkHistogram(
            "fraud_stream_end_to_end_latency_seconds", "Kafka record timestamp to prediction delivered", LATENCY_BUCKETS
        )
        r.register(self.latency)
        self.model_version = Gauge("fraud_stream_model_version", "Registry version of the model in use", ["model_name"], registry=r)
        self.model_info = Info("fraud_stream_model", "Model in use", registry=r)
        self.model_swaps = Counter("fraud_stream_model_swaps", "Champion versions loaded (startup + hot reloads)", registry=r)
        self.refresh_failures = Counter(
            "fraud_stream_model_refresh_failures", "Failed champion checks/loads (last good model kept), by stage", ["stage"], registry=r
        )
        self.consumer_lag = Gauge("fraud_stream_consumer_lag_records", "Records between the last processed offset and the topic end", registry=r)
        self.broker_outages = Counter(
            "fraud_stream_broker_outage_restarts", "Query restarts from the checkpoint after the broker did not answer", registry=r
        )
        self.input_rows_per_second = Gauge("fraud_stream_input_rows_per_second", "Spark's reported input rate of the last micro-batch", registry=r)

    def serve(self, port: int) -> None:
        if port:
            start_http_server(port, registry=self.registry)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        found = self.registry.get_sample_value(name, labels or {})
        return 0.0 if found is None else found
