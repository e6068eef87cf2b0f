"""Deciding transactions: the streaming scorer's steps, for requests instead of Kafka records.

1. ``parse``: the ingestion validator itself (``TransactionValidator.parse``, which refuses a card
   number in ANY field as ``raw_pan`` first), so a request is refused for exactly the rules a
   Kafka record is.
2. ``decide``: the events' pseudonymised keys and EUR amounts (as the stream's ``processed_frame``
   derives them), the shared feature module over the online store, the champion, its reasons, and
   the stream's thresholds and ``decide``.

State: a decision READS the online store and never writes it. The transaction still flows through
Kafka (the authorising system publishes it on ``transactions``), and the streaming feature
pipeline applies it exactly once; the API writing too would count it twice or race the stream.

Concurrent requests are coalesced by :class:`Batcher` on the event loop: the requests that arrive
in one loop iteration are decided in one call, so a burst costs one Redis round trip (rate-limit
checks first, then the state version and the features of the admitted requests) and one model pass
instead of one per request. Requests in
one call are still decided independently: each over the stored state only (large calls: rows
sharing a customer or terminal in separate rounds), so no request sees another request's transaction.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import numpy as np
import pandas as pd
from fraud_platform.domain.features import features_of_one
from fraud_platform.domain.hashing import entity_key
from fraud_platform.domain.schema import FX_TO_EUR, TransactionEvent
from fraud_platform.domain.card_data import mask_pans
from fraud_platform.domain.validation import Rejection, TransactionValidator
from spark_streaming.scoring import decide as decide_scores

from fraud_platform.api.auth import GCRA_LUA
from fraud_platform.api.champion import ChampionHolder, LoadedChampion
from fraud_platform.infra.online_store import READ_LUA, LuaScript, joined_entity_rows


class StoreUnavailable(RuntimeError):
    """The online store cannot serve features: the decision is refused (503), never made on empty state."""


def masked(rejection: Rejection) -> Rejection:
    """A rejection safe to return and log: any card number in its value or message is masked."""
    return Rejection(rejection.rule, rejection.field,
                     mask_pans(rejection.value) if rejection.value is not None else None, mask_pans(rejection.message))


def parse(body: bytes, validator: TransactionValidator) -> TransactionEvent | Rejection:
    """One request body -> the accepted event or the rule it broke (masked).

    The ingestion validator's per-record path (``TransactionValidator.parse``, which
    ``validate_transactions`` matches record for record and which refuses a card number in any
    field): ~20 us, where building a one-row Arrow table of it cost ~0.4 ms.
    """
    parsed = validator.parse(body)
    return masked(parsed) if isinstance(parsed, Rejection) else parsed


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
_EPOCH, _MICROSECOND = datetime(1970, 1, 1, tzinfo=timezone.utc), timedelta(microseconds=1)


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
    def of(cls, events: list[TransactionEvent]) -> "Inputs":
        return cls(
            [e.transaction_id for e in events],
            np.array([(e.event_time - _EPOCH) // _MICROSECOND for e in events], dtype="int64"),  # UTC (the schema's)
            [_customer_key(e.customer_id) for e in events],
            [e.terminal_id for e in events],
            np.array([float(e.amount) for e in events]) * np.array([FX_TO_EUR[e.currency] for e in events]),
            [e.channel for e in events],
            [e.country for e in events],
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


class RateLimited(Exception):
    """The job's API key is over its rate limit; ``wait`` is the seconds until it is not."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"rate limited for {wait:.3f} s")
        self.wait = wait


@dataclass
class Job:
    events: list[TransactionEvent]
    started: float  # perf_counter when the request arrived
    api_key: str
    cost: int = 1  # rate-limit tokens (a batch: one per event)


# ARGV: prefix, us per request, tolerance (the limiter's head), then per job: its rate-limit key
# ('' = not limited), cost, number of (customer, terminal) pairs, the pairs. Each job's limit is
# checked FIRST and a refused job's entities are not read: {state version, then per job its wait
# in us (0: admitted) followed, when admitted, by its pairs' joined customer and terminal hashes}.
_ADMIT_AND_READ = LuaScript(GCRA_LUA + READ_LUA + """
local p, interval, tolerance = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now = redis_now_us()
local out = {state_version(p)}
local i = 4
while i <= #ARGV do
  local wait = 0
  if ARGV[i] ~= '' then wait = gcra(ARGV[i], tonumber(ARGV[i + 1]), interval, tolerance, now) end
  local n = tonumber(ARGV[i + 2])
  out[#out + 1] = wait
  i = i + 3
  if wait == 0 then
    for j = i, i + 2 * n - 1, 2 do
      out[#out + 1] = joined_hash(p .. 'c:' .. ARGV[j])
      out[#out + 1] = joined_hash(p .. 't:' .. ARGV[j + 1])
    end
  end
  i = i + 2 * n
end
return out
""")


@dataclass
class DecisionEngine:
    champion: ChampionHolder
    store: Any  # fraud_platform.infra.online_store.OnlineFeatureStore (or anything with its interface)
    review_threshold: float | None
    block_threshold: float
    reasons: int = 3
    on_decided: Callable[[list[dict]], None] = lambda decisions: None
    unavailable_errors: tuple[type[BaseException], ...] = field(default=())
    one_by_one_up_to: int = 64  # calls up to this many events take the per-request feature path
    limiter: Any = None  # auth.SharedRateLimiter: checked in the same round trip, before the features

    async def feature_matrix(self, inputs: Inputs, columns: tuple[str, ...], jobs: list[Job]
                             ) -> tuple[np.ndarray, str, list[float]]:
        """The model's feature columns for the events of the admitted jobs over the store's state
        (a refused job's rows are left NaN: never read), that state's version, and each job's
        rate-limit wait (0: admitted).

        ONE round trip on the event loop (never blocking it): every job's rate-limit check first,
        then the state version and, up to ``one_by_one_up_to`` events, every admitted event's
        customer and terminal, turned into features by :func:`features_of_one` in plain Python
        (~30 us an event). Events in one call never see each other there (each is computed over
        the stored state only). Larger calls read with the store's batch ``features`` (pandas, a
        few ms whatever the size, in a worker thread) split into rounds where no two events share a
        customer or terminal. Both equal the shared core exactly (tested).
        """
        config = self.store.config
        index = _column_index(config, columns)
        n = len(inputs.transaction_id)
        one_by_one = n <= self.one_by_one_up_to
        X = np.full((n, len(columns)), np.nan)
        args, row = [self.store.prefix, *(self.limiter.head if self.limiter is not None else ("0", "0"))], 0
        for job in jobs:
            args += self.limiter.limit(job.api_key, job.cost) if self.limiter is not None else ("", "0")
            if one_by_one:
                args.append(len(job.events))
                for i in range(row, row + len(job.events)):
                    args += (inputs.customer_key[i], inputs.terminal_id[i])
            else:
                args.append(0)
            row += len(job.events)
        try:
            (reply,) = await self.store.async_client().scripts([(_ADMIT_AND_READ, [], args)])
            waits, admitted, at, row = [], [], 1, 0
            for job in jobs:
                wait = int(reply[at]) / 1e6
                waits.append(wait)
                at += 1
                rows = range(row, row + len(job.events))
                row += len(job.events)
                if wait > 0:
                    continue
                admitted += rows
                if one_by_one:
                    for i in rows:
                        values = features_of_one(*joined_entity_rows(inputs.customer_key[i], inputs.terminal_id[i], reply[at], reply[at + 1]),
                                                 int(inputs.time_us[i]), float(inputs.amount_eur[i]), inputs.terminal_id[i], config)
                        X[i] = [values[j] for j in index]
                        at += 2
            if admitted and not one_by_one:
                X[admitted] = await asyncio.to_thread(self._batch_features, inputs, admitted, columns)
        except self.unavailable_errors as error:
            raise StoreUnavailable(f"online feature store unavailable: {error}") from error
        return X, reply[0].decode(), waits

    def _batch_features(self, inputs: Inputs, rows: list[int], columns: tuple[str, ...]) -> np.ndarray:
        out = np.empty((len(rows), len(columns)))
        for picked in rounds([inputs.customer_key[i] for i in rows], [inputs.terminal_id[i] for i in rows]):
            out[picked] = self.store.features(inputs.frame([rows[i] for i in picked]))[list(columns)].to_numpy(dtype="float64")
        return out

    async def decide(self, jobs: list[Job]) -> list[list[dict] | RateLimited]:
        """Decisions for every event of every job (or the job's :class:`RateLimited`: its events
        are neither read nor scored), with one champion (taken once) for all of them."""
        champion = self.champion.current()
        events = [e for job in jobs for e in job.events]
        inputs = Inputs.of(events)
        columns = tuple(champion.info.features)
        X, state_version, waits = await self.feature_matrix(inputs, columns, jobs)
        scored, row = [], 0
        for job, wait in zip(jobs, waits):
            if wait == 0:
                scored += range(row, row + len(job.events))
            row += len(job.events)
        if scored:
            scores, reasons = champion.model.score_and_reasons(X[scored], self.reasons)
            review, block = thresholds(champion, self.review_threshold, self.block_threshold)
            labels = decide_scores(scores, review, block).tolist()
        now = time.perf_counter()
        decided_at = datetime.now(timezone.utc).isoformat()
        out: list = []
        decided, i, k = [], 0, 0  # i: the event's row, k: its position among the scored rows
        for job, wait in zip(jobs, waits):
            if wait > 0:
                out.append(RateLimited(wait))
                i += len(job.events)
                continue
            decisions = []
            for event in job.events:
                decisions.append({
                    "transaction_id": inputs.transaction_id[i], "decided_at": decided_at, "source": "api",
                    "event_time": event.event_time.isoformat(timespec="microseconds"), "customer_key": inputs.customer_key[i],
                    "terminal_id": inputs.terminal_id[i], "amount_eur": float(inputs.amount_eur[i]),
                    "score": float(scores[k]), "decision": labels[k], "threshold": float(review),
                    "block_threshold": float(block), "model_name": champion.name, "model_version": champion.version,
                    "feature_state_version": state_version, "reasons": [r.as_dict() for r in reasons[k]],
                    "latency_ms": (now - job.started) * 1000, "api_key": job.api_key,
                    "channel": inputs.channel[i], "country": inputs.country[i],
                    "features": dict(zip(columns, X[i].tolist())),
                })
                i += 1
                k += 1
            decided += decisions
            out.append(decisions)
        if decided:
            self.on_decided(decided)
        return out


@lru_cache(maxsize=64)
def _column_index(config, columns: tuple[str, ...]) -> list[int]:
    """Positions of the model's columns in ``features_of_one``'s output (once per model)."""
    names = config.feature_columns()
    return [names.index(c) for c in columns]


class Batcher:
    """Decides, in one engine call, every request that arrived in the same loop iteration (see the
    module docstring).

    The first request of an iteration schedules the call with ``call_soon``; requests whose tasks
    run before it join, so a burst is one feature read and one model call while a lone request
    waits for nothing. The call runs as a task on the loop: its Redis round trip is awaited (the
    loop serves other requests meanwhile, and a hung Redis costs the waiting requests a 503 after
    the store's timeout, never the loop), and calls of later iterations do not wait for it. No
    thread: handing each request to a worker thread and back (queue, GIL,
    ``call_soon_threadsafe``) cost more CPU than the decision itself.
    """

    def __init__(self, engine: DecisionEngine, max_events: int = 1024) -> None:
        self.engine, self.max_events = engine, max_events
        self.batch_sizes: Callable[[int], None] = lambda n: None
        self._pending: list[tuple[Job, asyncio.Future]] = []
        self._running: set[asyncio.Task] = set()  # the loop keeps only weak references to tasks

    async def submit(self, events: list[TransactionEvent], started: float, api_key: str, cost: int = 1) -> list[dict]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        if not self._pending:
            loop.call_soon(self._run)
        self._pending.append((Job(events, started, api_key, cost), future))
        return await future

    def _run(self) -> None:
        pending, self._pending = self._pending, []
        while pending:
            calls, n = [], 0
            while pending and (not calls or n + len(pending[0][0].events) <= self.max_events):
                calls.append(pending.pop(0))
                n += len(calls[-1][0].events)
            self.batch_sizes(n)
            task = asyncio.ensure_future(self._decide(calls))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _decide(self, calls: list[tuple[Job, asyncio.Future]]) -> None:
        try:
            results = await self.engine.decide([job for job, _ in calls])
        except BaseException as error:  # every waiting request gets the error, none hangs
            results = [error] * len(calls)
        for (_, future), result in zip(calls, results):
            if future.done():  # the client went away
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    def stop(self) -> None:
        """Nothing to stop: no thread (kept so the app's shutdown does not care)."""
