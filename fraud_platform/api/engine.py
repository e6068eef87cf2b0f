"""Deciding transactions: the streaming scorer's steps, for requests instead of Kafka records.

1. ``parse``: a card number in ANY field is refused as ``raw_pan`` first (the ingestion validator
   only looks at ``card_token``); then the ingestion validator itself
   (``validate_transactions``), so a request is refused for exactly the rules a Kafka record is.
2. ``decide``: the stream's ``processed_frame`` (pseudonymised keys, EUR amount), the shared feature
   module over the online store (``OnlineFeatureStore.features``), the champion, its reasons, and
   the stream's thresholds and ``decide``.

State: a decision READS the online store and never writes it. The transaction still flows through
Kafka (the authorising system publishes it on ``transactions``), and the streaming feature
pipeline applies it exactly once; the API writing too would count it twice or race the stream.

Concurrent requests are coalesced by :class:`Batcher` (one worker thread): whatever is queued when
the worker is free is decided in one call, so a burst costs one feature lookup and one model call
instead of one per request. Requests in one call are still decided independently: rows sharing a
customer or terminal go to separate rounds, so no request sees another request's transaction.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

from fraud_platform.domain.batch_validation import validate_transactions
from fraud_platform.domain.validation import Rejection, TransactionValidator, looks_like_pan, mask_pans
from spark_streaming.scoring import decide as decide_scores, processed_frame

from fraud_platform.api.champion import ChampionHolder, LoadedChampion

FEATURE_INPUT = ["transaction_id", "event_time", "customer_key", "terminal_id", "amount_eur"]


class StoreUnavailable(RuntimeError):
    """The online store cannot serve features: the decision is refused (503), never made on empty state."""


def _pan_rejection(payload: Any) -> Rejection | None:
    """A raw card number anywhere in the payload (any field, string or integer)."""
    if not isinstance(payload, dict):
        return None
    for name, value in payload.items():
        text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if isinstance(text, str) and looks_like_pan(text):
            return Rejection("raw_pan", str(name), "<redacted PAN>",
                             f"field '{name}' holds a raw card number; only card tokens are accepted")
    return None


def masked(rejection: Rejection) -> Rejection:
    """A rejection safe to return and log: any card number in its value or message is masked."""
    return Rejection(rejection.rule, rejection.field,
                     mask_pans(rejection.value) if rejection.value is not None else None, mask_pans(rejection.message))


def parse(body: bytes, validator: TransactionValidator) -> pa.Table | Rejection:
    """One request body -> one accepted event (``ACCEPTED_SCHEMA`` row) or the rule it broke."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = None  # the validator names the problem (malformed_json)
    pan = _pan_rejection(payload)
    if pan is not None:
        return pan
    return parse_many([body], validator)[0]


def parse_many(bodies: list[bytes], validator: TransactionValidator) -> list[pa.Table | Rejection]:
    """Validate raw events with the ingestion validator, in order (PAN scan done by the caller)."""
    validated = validate_transactions(bodies, validator)
    out: list[pa.Table | Rejection] = [None] * len(bodies)  # type: ignore[list-item]
    for position, rejection in validated.rejections:
        out[position] = masked(rejection)
    for row, position in enumerate(validated.positions):
        out[int(position)] = validated.accepted.slice(row, 1)
    return out


def rounds(frame: pd.DataFrame) -> list[np.ndarray]:
    """Row positions split so no round holds two rows of one customer or one terminal."""
    placed: list[tuple[set, set, list[int]]] = []
    for i, (customer, terminal) in enumerate(zip(frame["customer_key"], frame["terminal_id"])):
        for customers, terminals, rows in placed:
            if customer not in customers and terminal not in terminals:
                customers.add(customer), terminals.add(terminal), rows.append(i)
                break
        else:
            placed.append(({customer}, {terminal}, [i]))
    return [np.asarray(rows) for _, _, rows in placed]


def thresholds(champion: LoadedChampion, review_override: float | None, block: float) -> tuple[float, float]:
    """The stream's rule (``BatchScorer.thresholds``): the configured review threshold, else the
    champion's tag, else 0.5; block at or above ``max(review, block)``."""
    review = review_override if review_override is not None else champion.info.threshold
    review = 0.5 if review is None else review
    return review, max(review, block)


@dataclass
class Job:
    events: list[pa.Table]
    started: float  # perf_counter when the request arrived
    api_key: str
    done: Callable[[list[dict] | BaseException], None]


@dataclass
class DecisionEngine:
    champion: ChampionHolder
    store: Any  # fraud_platform.infra.online_store.OnlineFeatureStore (or anything with its interface)
    review_threshold: float | None
    block_threshold: float
    reasons: int = 3
    on_decided: Callable[[list[dict]], None] = lambda decisions: None
    unavailable_errors: tuple[type[BaseException], ...] = field(default=())

    def features(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
        try:
            return self.store.features(frame[FEATURE_INPUT]), str(self.store.state_version())
        except self.unavailable_errors as error:
            raise StoreUnavailable(f"online feature store unavailable: {error}") from error

    def decide(self, jobs: list[Job]) -> list[list[dict]]:
        """Decisions for every event of every job, with one champion (taken once) for all of them."""
        champion = self.champion.current()
        sizes = [len(job.events) for job in jobs]
        events = pa.concat_tables([e for job in jobs for e in job.events])
        frame = processed_frame(events)
        columns = list(champion.info.features)
        X = np.empty((len(frame), len(columns)))
        state_version = "unknown"
        for picked in rounds(frame):
            feats, state_version = self.features(frame.iloc[picked])
            X[picked] = feats[columns].to_numpy(dtype="float64")
        scores = champion.model.predict(X)
        reasons = champion.model.reasons(X, self.reasons)
        review, block = thresholds(champion, self.review_threshold, self.block_threshold)
        labels = decide_scores(scores, review, block)
        now = time.perf_counter()
        decided_at = datetime.now(timezone.utc).isoformat()
        started = np.repeat([job.started for job in jobs], sizes)
        keys = np.repeat([job.api_key for job in jobs], sizes)
        decisions = [
            {
                "transaction_id": frame["transaction_id"].iat[i],
                "decided_at": decided_at,
                "source": "api",
                "event_time": frame["event_time"].iat[i].isoformat(),
                "customer_key": frame["customer_key"].iat[i],
                "terminal_id": frame["terminal_id"].iat[i],
                "amount_eur": float(frame["amount_eur"].iat[i]),
                "score": float(scores[i]),
                "decision": str(labels[i]),
                "threshold": float(review),
                "block_threshold": float(block),
                "model_name": champion.name,
                "model_version": champion.version,
                "feature_state_version": state_version,
                "reasons": [r.as_dict() for r in reasons[i]],
                "latency_ms": (now - started[i]) * 1000,
                "api_key": str(keys[i]),
                "channel": str(frame["channel"].iat[i]),
                "country": str(frame["country"].iat[i]),
                "features": dict(zip(columns, X[i].tolist())),
            }
            for i in range(len(frame))
        ]
        self.on_decided(decisions)
        out, at = [], 0
        for size in sizes:
            out.append(decisions[at:at + size])
            at += size
        return out


class Batcher:
    """One worker thread deciding whatever jobs are queued, all at once (see the module docstring)."""

    def __init__(self, engine: DecisionEngine, max_events: int = 1024) -> None:
        self.engine, self.max_events = engine, max_events
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.batch_sizes: Callable[[int], None] = lambda n: None
        self._thread = threading.Thread(target=self._run, name="decision-batcher", daemon=True)
        self._thread.start()

    async def submit(self, events: list[pa.Table], started: float, api_key: str) -> list[dict]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()

        def done(result: list[dict] | BaseException) -> None:
            def settle() -> None:
                if future.done():
                    return
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
            loop.call_soon_threadsafe(settle)

        self._queue.put(Job(events, started, api_key, done))
        return await future

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs, n = [job], len(job.events)
            while n < self.max_events:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                jobs.append(nxt)
                n += len(nxt.events)
            self.batch_sizes(n)
            try:
                results = self.engine.decide(jobs)
            except BaseException as error:  # every waiting request gets the error, none hangs
                for j in jobs:
                    j.done(error)
                continue
            for j, result in zip(jobs, results):
                j.done(result)

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)
