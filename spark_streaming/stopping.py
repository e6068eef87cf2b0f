"""When a streaming process stops: one rule for the scorer (``job.run``) and the feature pipeline
(``feature_pipeline.run``), so both end a run the same way - after the current micro-batch, on
SIGTERM/SIGINT, on the embedding host's ``stop`` event or after ``max_batches``."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Callable

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """Callable: has a stop been requested? A context manager installs the signal handlers (only
    when ``handle_signals``: a process that owns its Spark session, not a host embedding the loop,
    whose own handlers stay) and restores the previous ones on exit."""

    def __init__(self, stop: threading.Event | None = None, max_batches: int | None = None,
                 batches: Callable[[], int] = lambda: 0, handle_signals: bool = True) -> None:
        self.stop, self.max_batches, self.batches, self.handle_signals = stop, max_batches, batches, handle_signals
        self.signals: list[int] = []
        self._previous: dict[int, object] = {}

    def _on_signal(self, signum, _frame) -> None:
        log.info("signal %d: stopping after the current micro-batch", signum)
        self.signals.append(signum)

    def __call__(self) -> bool:
        return bool(self.signals) or (self.stop is not None and self.stop.is_set()) \
            or bool(self.max_batches and self.batches() >= self.max_batches)

    def __enter__(self) -> "StopRequest":
        if self.handle_signals:
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *_exc) -> None:
        for sig, old in self._previous.items():
            signal.signal(sig, old)
        self._previous.clear()


def await_query(query, stop_requested: Callable[[], bool], poll_seconds: float = 0.2) -> None:
    """Wait while ``query`` runs, stopping it once ``stop_requested()``. A failed query ends the wait
    (``awaitTermination`` raises its exception); the caller reads it from ``query.exception()``."""
    from pyspark.errors import StreamingQueryException

    while query.isActive:
        try:
            query.awaitTermination(poll_seconds)
        except StreamingQueryException:
            break
        if stop_requested():
            query.stop()
