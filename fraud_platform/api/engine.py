"""Deciding transactions: the streaming scorer's steps, for requests instead of Kafka records.

1. ``parse``: a card number in ANY field is refused as ``raw_pan`` first (the ingestion validator
   only looks at ``card_token``); then the ingestion validator itself
   (``validate_transactions``), so a request is refused for exactly the rules a Kafka record is.
2. ``decide``: the events' pseudonymised keys and EUR amounts (as the stream's ``processed_frame``
   derives them), the shared feature module over the online store, the champion, its reasons, and
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
from functools import lru_cache
from datetime import datetime, timezone
from typing import Any, Callable

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

from fraud_platform.domain.batch_validation import validate_transactions
from fraud_platform.domain.features import features_of_one
from fraud_platform.domain.hashing import entity_key
from fraud_platform.domain.schema import FX_TO_EUR
from fraud_platform.domain.validation import Rejection, TransactionValidator, looks_like_pan, mask_pans
from spark_streaming.scoring import decide as decide_scores

from fraud_platform.api.champion import ChampionHolder, LoadedChampion


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


def rounds(customers: list[str], terminals: list[str]) -> list[list[int]]:
    """Row positions split so no round holds two rows of one customer or one terminal."""
    placed: list[tuple[set, set, list[int]]] = []
    for i, (customer, terminal) in enumerate(zip(customers, terminals)):
        for seen_customers, seen_terminals, rows in placed:
            if customer not in seen_customers and terminal not in seen_terminals:
                seen_customers.add(customer), seen_terminals.add(terminal), rows.append(i)
                break
        else:
            placed.append(({customer}, {terminal}, [i]))
    return [rows for _, _, rows in placed]


_customer_key = lru_cache(maxsize=500_000)(entity_key)  # customers repeat; hash each once


@dataclass(frozen=True)
class Inputs:
    """What deciding needs from validated events, derived as the stream's ``processed_frame`` does
    (pseudonymised customer key, EUR amount, UTC microseconds) without building its 16-column frame
    (~1 ms a call); the API = stream test compares the two paths' scores."""

    transaction_id: list[str]
    time_us: np.ndarray
    customer_key: list[str]
    terminal_id: list[str]
    amount_eur: np.ndarray
    channel: list[str]  # the console filters alerts by these
    country: list[str]

    @classmethod
    def of(cls, events: pa.Table) -> "Inputs":
        fx = np.array([FX_TO_EUR[c] for c in events.column("currency").to_pylist()], dtype="float64")
        return cls(
            events.column("transaction_id").to_pylist(),
            events.column("event_time").cast(pa.int64()).to_numpy(),  # ACCEPTED_SCHEMA: timestamp[us, UTC]
            [_customer_key(c) for c in events.column("customer_id").to_pylist()],
            events.column("terminal_id").to_pylist(),
            events.column("amount").to_numpy() * fx,
            events.column("channel").to_pylist(),
            events.column("country").to_pylist(),
        )

    def frame(self, rows: list[int]) -> pd.DataFrame:
        """The rows in the online store's event shape (its batch ``features``)."""
        return pd.DataFrame({
            "transaction_id": [self.transaction_id[i] for i in rows],
            "event_time": pd.to_datetime(self.time_us[rows], unit="us", utc=True),
            "customer_key": [self.customer_key[i] for i in rows],
            "terminal_id": [self.terminal_id[i] for i in rows],
            "amount_eur": self.amount_eur[rows],
        })


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
    one_by_one_up_to: int = 32  # rounds up to this size take the per-request feature path

    def feature_matrix(self, inputs: Inputs, columns: tuple[str, ...]) -> tuple[np.ndarray, str]:
        """The model's feature columns for every event over the store's state, and that state's version.

        Small rounds take the per-request path (one pipelined read of the customer and terminal,
        :func:`features_of_one` in plain Python, ~0.1 ms); large ones the store's batch ``features``
        (pandas, a few ms whatever the size). Both equal the shared core exactly (tested).
        """
        config = self.store.config
        index = _column_index(config, columns)
        X = np.empty((len(inputs.transaction_id), len(columns)))
        try:
            version = str(self.store.state_version())
            for picked in rounds(inputs.customer_key, inputs.terminal_id):
                if len(picked) > self.one_by_one_up_to:
                    X[picked] = self.store.features(inputs.frame(picked))[list(columns)].to_numpy(dtype="float64")
                    continue
                for i in picked:
                    terminal = inputs.terminal_id[i]
                    values = features_of_one(*self.store.entity_rows(inputs.customer_key[i], terminal),
                                             int(inputs.time_us[i]), float(inputs.amount_eur[i]), terminal, config)
                    X[i] = [values[j] for j in index]
        except self.unavailable_errors as error:
            raise StoreUnavailable(f"online feature store unavailable: {error}") from error
        return X, version

    def decide(self, jobs: list[Job]) -> list[list[dict]]:
        """Decisions for every event of every job, with one champion (taken once) for all of them."""
        champion = self.champion.current()
        events = [e for job in jobs for e in job.events]
        inputs = Inputs.of(events[0] if len(events) == 1 else pa.concat_tables(events))
        columns = tuple(champion.info.features)
        X, state_version = self.feature_matrix(inputs, columns)
        scores = champion.model.predict(X)
        reasons = champion.model.reasons(X, self.reasons)
        review, block = thresholds(champion, self.review_threshold, self.block_threshold)
        labels = decide_scores(scores, review, block).tolist()
        event_times = np.datetime_as_string(inputs.time_us.astype("datetime64[us]"), unit="us")
        now = time.perf_counter()
        decided_at = datetime.now(timezone.utc).isoformat()
        out, i = [], 0
        for job in jobs:
            decisions = []
            for _ in job.events:
                decisions.append({
                    "transaction_id": inputs.transaction_id[i], "decided_at": decided_at, "source": "api",
                    "event_time": f"{event_times[i]}+00:00", "customer_key": inputs.customer_key[i],
                    "terminal_id": inputs.terminal_id[i], "amount_eur": float(inputs.amount_eur[i]),
                    "score": float(scores[i]), "decision": labels[i], "threshold": float(review),
                    "block_threshold": float(block), "model_name": champion.name, "model_version": champion.version,
                    "feature_state_version": state_version, "reasons": [r.as_dict() for r in reasons[i]],
                    "latency_ms": (now - job.started) * 1000, "api_key": job.api_key,
                    "channel": inputs.channel[i], "country": inputs.country[i],
                    "features": dict(zip(columns, X[i].tolist())),
                })
                i += 1
            out.append(decisions)
        self.on_decided([d for decisions in out for d in decisions])
        return out


@lru_cache(maxsize=64)
def _column_index(config, columns: tuple[str, ...]) -> list[int]:
    """Positions of the model's columns in ``features_of_one``'s output (once per model)."""
    names = config.feature_columns()
    return [names.index(c) for c in columns]


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
