"""The one stop rule of the scorer and the feature pipeline (``spark_streaming.stopping``): SIGTERM,
the host's stop event and ``max_batches`` stop the query after the current micro-batch; signal
handlers are installed only by a process that owns Spark and are restored afterwards. Both runs use
it (asserted on their source, so neither grows its own loop again)."""

from __future__ import annotations

import inspect
import os
import signal
import threading

import pytest

from spark_streaming import feature_pipeline, job
from spark_streaming.stopping import StopRequest, await_query


class FakeQuery:
    """A streaming query that runs until stopped, counting micro-batches as awaitTermination polls."""

    def __init__(self, on_poll=lambda n: None, fail_with: BaseException | None = None) -> None:
        self.isActive, self.polls, self.stopped, self.on_poll, self.fail_with = True, 0, False, on_poll, fail_with

    def awaitTermination(self, _timeout: float) -> None:
        self.polls += 1
        if self.fail_with is not None:
            self.isActive = False
            raise self.fail_with
        self.on_poll(self.polls)

    def stop(self) -> None:
        self.stopped, self.isActive = True, False


def test_sigterm_stops_after_the_current_batch_and_the_previous_handler_comes_back():
    before = signal.getsignal(signal.SIGTERM)
    with StopRequest(handle_signals=True) as stop_requested:
        query = FakeQuery(on_poll=lambda n: os.kill(os.getpid(), signal.SIGTERM) if n == 3 else None)
        await_query(query, stop_requested, poll_seconds=0)
        assert query.stopped and query.polls == 3 and stop_requested.signals == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) is before


def test_an_embedded_run_leaves_the_hosts_handlers_alone_and_stops_on_its_event_or_batch_count():
    host = signal.getsignal(signal.SIGINT)
    event = threading.Event()
    with StopRequest(stop=event, handle_signals=False) as stop_requested:
        assert signal.getsignal(signal.SIGINT) is host
        query = FakeQuery(on_poll=lambda n: event.set() if n == 2 else None)
        await_query(query, stop_requested, poll_seconds=0)
        assert query.stopped and query.polls == 2
    batches = []
    stop_requested = StopRequest(max_batches=4, batches=lambda: len(batches), handle_signals=False)
    query = FakeQuery(on_poll=batches.append)
    await_query(query, stop_requested, poll_seconds=0)
    assert query.stopped and len(batches) == 4


def test_a_failed_query_ends_the_wait_for_the_caller_to_read_its_exception():
    from pyspark.errors import StreamingQueryException

    query = FakeQuery(fail_with=StreamingQueryException("boom"))
    await_query(query, StopRequest(handle_signals=False), poll_seconds=0)
    assert not query.stopped and query.polls == 1


@pytest.mark.parametrize("module", [job, feature_pipeline])
def test_scorer_and_feature_pipeline_share_the_rule(module):
    source = inspect.getsource(module.run)
    assert "StopRequest(" in source and "await_query(" in source
    assert "signal.signal" not in source and "awaitTermination" not in source
    assert module.StopRequest is StopRequest and module.await_query is await_query
