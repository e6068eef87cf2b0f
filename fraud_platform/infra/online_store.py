"""The online feature store: per-entity feature state in Redis, shared by the streaming feature
pipeline (writes), the streaming scorer and the decision API (reads). See docs/online_store.md.

Layout (``P`` = key prefix; times in int64 microseconds, days since the epoch, UTC):

* ``Pc:<customer_key>`` hash: ``e:<tx_id>`` = ``time,cents,terminal`` (exact events of open days),
  ``b:<day>`` = ``n,cents`` (closed-day buckets), ``p:<terminal>`` = last-seen time of the pair in
  closed days, ``k`` = the cutoff day it was last compacted at.
* ``Pt:<terminal_id>`` hash: ``b:<day>`` = transactions that day; ``f:<tx_id>`` = ``tx_day,known_us``
  (a known fraud); ``s:<tx_day>:<known_us>`` = count (frauds materialised from a snapshot); ``k``.
* ``Px:<tx_id>`` = ``day,time,terminal``: the transaction index, TTL = label maturity horizon. It is
  also the apply guard: a transaction is applied only by the call that creates its index entry, so
  re-applying a batch (a replayed micro-batch) changes nothing.
* ``Pl:<tx_id>`` = a fraud label whose transaction is not applied yet (applied when it is).
* ``Pd:<tx_id>`` = claim token of :meth:`claim_ids` (``SET NX EX``, duplicate detection).
* ``Pmeta`` hash: snapshot ``as_of_us``/``snapshot_version``, ``max_day``, applied counters.

Only a customer's current day needs exact times (terminal windows and earlier customer days are
whole days), so events stay exact while their day is "open" (``open_days`` up to the newest day
seen) and are folded into daily buckets after; everything older than the longest window is
dropped at compaction and every entity key has a TTL, so memory is bounded by entities x window.
All writes run as Lua scripts (atomic, one round trip per batch); reads are one round trip, a Lua
script that returns a batch's whole state as one string (cheap to parse in Python).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from fraud_platform.domain.features import (
    DEFAULT_CONFIG,
    US_PER_DAY,
    EntityHistory,
    FeatureConfig,
    FeatureSnapshot,
    event_rows,
    features_on_history,
    timestamps_us,
)

# Events per Lua call: keeps each script (which blocks the server while it runs) short for readers.
_CHUNK = 2000

_LUA_HELPERS = """
local DAY = 86400000000
local function split2(v)
  local c = string.find(v, ',', 1, true)
  return string.sub(v, 1, c - 1), string.sub(v, c + 1)
end
local function split3(v)
  local c1 = string.find(v, ',', 1, true)
  local c2 = string.find(v, ',', c1 + 1, true)
  return string.sub(v, 1, c1 - 1), string.sub(v, c1 + 1, c2 - 1), string.sub(v, c2 + 1)
end
local function meta_number(p, name)
  return tonumber(redis.call('HGET', p .. 'meta', name) or '-1')
end
"""

# ARGV: prefix, tx_ttl, entity_ttl, open_days, history_days, then (tx, customer, terminal, time, cents, day)*
_APPLY_TRANSACTIONS = _LUA_HELPERS + """
local p, tx_ttl, ent_ttl = ARGV[1], ARGV[2], ARGV[3]
local open_days, history_days = tonumber(ARGV[4]), tonumber(ARGV[5])
local as_of = meta_number(p, 'as_of_us')
local max_day = meta_number(p, 'max_day')
local customers, terminals = {}, {}
local applied, labelled = 0, 0
for i = 6, #ARGV, 6 do
  local tx, cust, term, time, cents, day = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  if redis.call('SET', p .. 'x:' .. tx, day .. ',' .. time .. ',' .. term, 'NX', 'EX', tx_ttl) then
    local tkey = p .. 't:' .. term
    if tonumber(time) >= as_of then  -- earlier ones are in the materialised snapshot already
      local ckey = p .. 'c:' .. cust
      redis.call('HSET', ckey, 'e:' .. tx, time .. ',' .. cents .. ',' .. term)
      redis.call('HINCRBY', tkey, 'b:' .. day, 1)
      customers[ckey] = true
      terminals[tkey] = true
      applied = applied + 1
      if tonumber(day) > max_day then max_day = tonumber(day) end
    end
    local lkey = p .. 'l:' .. tx
    local known = redis.call('GET', lkey)
    if known then
      if tonumber(known) >= as_of then
        redis.call('HSET', tkey, 'f:' .. tx, day .. ',' .. known)
        terminals[tkey] = true
        labelled = labelled + 1
      end
      redis.call('DEL', lkey)
    end
  end
end
if applied > 0 then
  redis.call('HINCRBY', p .. 'meta', 'tx_applied', applied)
  redis.call('HSET', p .. 'meta', 'max_day', string.format('%d', max_day))
end
if labelled > 0 then redis.call('HINCRBY', p .. 'meta', 'labels_applied', labelled) end
-- Compaction of the touched entities (skipped while the cutoff day has not moved).
local cutoff = max_day - open_days + 1
local keep = cutoff - history_days
local keep_us = keep * DAY
local cut = string.format('%d', cutoff)
for ckey in pairs(customers) do
  redis.call('EXPIRE', ckey, ent_ttl)
  if redis.call('HGET', ckey, 'k') ~= cut then
    local h = redis.call('HGETALL', ckey)
    local fold = {}
    for j = 1, #h, 2 do
      local f, v = h[j], h[j + 1]
      local kind = string.sub(f, 1, 2)
      if kind == 'e:' then
        local time, cents, term = split3(v)
        local day = math.floor(tonumber(time) / DAY)
        if day < cutoff then
          redis.call('HDEL', ckey, f)
          if day >= keep then
            local b = fold[day] or {0, 0}
            b[1] = b[1] + 1
            b[2] = b[2] + tonumber(cents)
            fold[day] = b
            local old = redis.call('HGET', ckey, 'p:' .. term)
            if (not old) or tonumber(old) < tonumber(time) then redis.call('HSET', ckey, 'p:' .. term, time) end
          end
        end
      elseif kind == 'b:' then
        if tonumber(string.sub(f, 3)) < keep then redis.call('HDEL', ckey, f) end
      elseif kind == 'p:' then
        if tonumber(v) < keep_us then redis.call('HDEL', ckey, f) end
      end
    end
    for day, b in pairs(fold) do
      local bf = 'b:' .. string.format('%d', day)
      local old = redis.call('HGET', ckey, bf)
      local n, cents = b[1], b[2]
      if old then
        local on, oc = split2(old)
        n, cents = n + tonumber(on), cents + tonumber(oc)
      end
      redis.call('HSET', ckey, bf, string.format('%d,%d', n, cents))
    end
    redis.call('HSET', ckey, 'k', cut)
  end
end
for tkey in pairs(terminals) do
  redis.call('EXPIRE', tkey, ent_ttl)
  if redis.call('HGET', tkey, 'k') ~= cut then
    local h = redis.call('HGETALL', tkey)
    for j = 1, #h, 2 do
      local f, v = h[j], h[j + 1]
      local kind = string.sub(f, 1, 2)
      local day = nil
      if kind == 'b:' then day = tonumber(string.sub(f, 3))
      elseif kind == 'f:' then day = tonumber((split2(v)))
      elseif kind == 's:' then day = tonumber((split2(string.sub(f, 3) .. ',')))
      end
      if day and day < keep then redis.call('HDEL', tkey, f) end
    end
    redis.call('HSET', tkey, 'k', cut)
  end
end
return {applied, labelled}
"""

# ARGV: prefix, pending_ttl, then (tx, known_us)*; only fraud labels are passed.
_APPLY_LABELS = _LUA_HELPERS + """
local p, pending_ttl = ARGV[1], ARGV[2]
local as_of = meta_number(p, 'as_of_us')
local applied, pending = 0, 0
for i = 3, #ARGV, 2 do
  local tx, known = ARGV[i], ARGV[i + 1]
  local x = redis.call('GET', p .. 'x:' .. tx)
  if x then
    local day, time, term = split3(x)
    if tonumber(known) >= as_of then  -- earlier labels are in the materialised snapshot already
      local tkey, f = p .. 't:' .. term, 'f:' .. tx
      local old = redis.call('HGET', tkey, f)
      local _, old_known = nil, nil
      if old then _, old_known = split2(old) end
      if (not old) or tonumber(known) < tonumber(old_known) then
        redis.call('HSET', tkey, f, day .. ',' .. known)
        if not old then applied = applied + 1 end
      end
    end
  else
    local lkey = p .. 'l:' .. tx
    local old = redis.call('GET', lkey)
    if (not old) or tonumber(known) < tonumber(old) then
      redis.call('SET', lkey, known, 'EX', pending_ttl)
      pending = pending + 1
    end
  end
end
if applied > 0 then redis.call('HINCRBY', p .. 'meta', 'labels_applied', applied) end
return {applied, pending}
"""

# KEYS[1]: an entity hash; ARGV: as_of_us, ttl, then field/value pairs of the snapshot's state.
# Everything the stream stored before as_of is replaced by the snapshot (no double counting when a
# newer snapshot is materialised under a running stream); pair last-seen times only move forward.
_MATERIALISE = _LUA_HELPERS + """
local key, as_of = KEYS[1], tonumber(ARGV[1])
local h = redis.call('HGETALL', key)
for j = 1, #h, 2 do
  local f, v = h[j], h[j + 1]
  local kind = string.sub(f, 1, 2)
  local drop = false
  if kind == 'e:' then drop = tonumber((split3(v))) < as_of
  elseif kind == 'b:' then drop = tonumber(string.sub(f, 3)) * DAY < as_of
  elseif kind == 'f:' then
    local _, known = split2(v)
    drop = tonumber(known) < as_of
  elseif kind == 's:' then drop = true
  end
  if drop then redis.call('HDEL', key, f) end
end
for i = 3, #ARGV, 2 do
  local f, v = ARGV[i], ARGV[i + 1]
  local old = nil
  if string.sub(f, 1, 2) == 'p:' then old = redis.call('HGET', key, f) end
  if (not old) or tonumber(old) < tonumber(v) then redis.call('HSET', key, f, v) end
end
redis.call('EXPIRE', key, ARGV[2])
return 1
"""

# ARGV: prefix, ttl, token, then ids (unique within the call). One '1'/'0' per id in ONE string
# (a reply per id cost redis-py's Python parser more than the claim).
_CLAIM = """
local p, ttl, token = ARGV[1], ARGV[2], ARGV[3]
local out = {}
for i = 4, #ARGV do
  local key = p .. 'd:' .. ARGV[i]
  if redis.call('SET', key, token, 'NX', 'EX', ttl) then
    out[#out + 1] = '1'
  elseif redis.call('GET', key) == token then
    out[#out + 1] = '1'
  else
    out[#out + 1] = '0'
  end
end
return table.concat(out)
"""


# The decision path's reads as Lua functions: this module's ``_READ_ENTITIES`` and the decision
# API's admit-and-read script (rate limit first, then the reads) are built from them. The state
# version (as :meth:`state_version` spells it) and an entity hash joined into ONE string
# ("field\nvalue\n..."; ids cannot hold a newline: the validator refuses control characters): the
# client parses a few replies per decision instead of two per hash field, which in pure-Python
# redis-py was most of a decision's read cost.
READ_LUA = """
local function state_version(p)
  local meta = redis.call('HMGET', p .. 'meta', 'snapshot_version', 'tx_applied', 'labels_applied')
  return (meta[1] or 'empty') .. '+tx' .. (meta[2] or '0') .. '+lb' .. (meta[3] or '0')
end
local function joined_hash(key)
  return table.concat(redis.call('HGETALL', key), '\\n')
end
"""

# ARGV: prefix, then customer, terminal pairs -> {state version, customer hash, terminal hash, ...}.
_READ_ENTITIES = READ_LUA + """
local p = ARGV[1]
local out = {state_version(p)}
for i = 2, #ARGV, 2 do
  out[#out + 1] = joined_hash(p .. 'c:' .. ARGV[i])
  out[#out + 1] = joined_hash(p .. 't:' .. ARGV[i + 1])
end
return out
"""

# ARGV: prefix, number of customers, number of terminals, customers, terminals, then transaction
# ids. ONE bulk string for a whole micro-batch's read: every entity hash joined as in
# _READ_ENTITIES, entities separated by \x1e (record separator; ids cannot hold control
# characters), then one '1'/'0' per transaction id (already in the transaction index). One reply
# instead of one per hash field: redis-py's pure-Python RESP parser took ~0.1 ms per record for a
# batch's HGETALL replies, more than the features cost.
_READ_HISTORY = """
local p, nc, nt = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for i = 4, 3 + nc do
  out[#out + 1] = table.concat(redis.call('HGETALL', p .. 'c:' .. ARGV[i]), '\\n')
end
for i = 4 + nc, 3 + nc + nt do
  out[#out + 1] = table.concat(redis.call('HGETALL', p .. 't:' .. ARGV[i]), '\\n')
end
local bits = {}
for i = 4 + nc + nt, #ARGV do
  bits[#bits + 1] = redis.call('EXISTS', p .. 'x:' .. ARGV[i]) == 1 and '1' or '0'
end
out[#out + 1] = table.concat(bits)
return table.concat(out, '\\30')
"""


class LuaScript:
    """A Lua script queued with EVALSHA on a pipeline. redis-py's ``Script`` on a pipeline asks
    SCRIPT EXISTS before every execute (a second round trip per decision); the SHA of the source is
    known, so this queues EVALSHA directly and :func:`execute_loading` loads every script once when
    Redis answers NOSCRIPT (first use, restart)."""

    known: list["LuaScript"] = []

    def __init__(self, source: str) -> None:
        import hashlib

        self.source, self.sha = source, hashlib.sha1(source.encode()).hexdigest()
        LuaScript.known.append(self)

    def queue(self, pipe, keys: list, args: list) -> None:
        pipe.evalsha(self.sha, len(keys), *keys, *args)


def execute_loading(client, queue: Callable[[Any], None]) -> list:
    """Queue commands with ``queue(pipe)`` and run them in one round trip; on NOSCRIPT, load the
    scripts and run them again (once)."""
    import redis

    for attempt in (1, 2):
        pipe = client.pipeline(transaction=False)
        queue(pipe)
        try:
            return pipe.execute()
        except redis.exceptions.NoScriptError:
            if attempt == 2:
                raise
            for script in LuaScript.known:
                client.script_load(script.source)
    raise AssertionError("unreachable")


_READ_ENTITIES_SCRIPT = LuaScript(_READ_ENTITIES)


@functools.lru_cache(maxsize=None)
def _lua_script(source: str) -> LuaScript:
    """One :class:`LuaScript` per source (EVALSHA, no SCRIPT EXISTS round trip per call)."""
    return LuaScript(source)
_READ_HISTORY_SCRIPT = LuaScript(_READ_HISTORY)


class OnlineStoreUnavailable(RuntimeError):
    """The store cannot be reached or answered with an error; the message is one line."""


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _redacted(url: str) -> str:
    """The URL without its password (it may appear in error messages and logs)."""
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1) if "://" in url else ("redis", url)
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


@dataclass
class OnlineFeatureStore:
    """Feature state for the streaming pipeline, the scorer and the API (see the module docstring).

    Picklable and connects lazily: Spark ships it to executors, each Python worker opens its own
    connection on first use.
    """

    url: str
    prefix: str = "fraud:"
    config: FeatureConfig = DEFAULT_CONFIG
    password: str | None = None
    dedupe_ttl_seconds: int = 7 * 86_400
    tx_index_ttl_seconds: int = 9 * 86_400
    # Days (up to the newest day seen) whose events stay exact; older days become buckets. Two days
    # keep events arriving up to a day late exact.
    open_days: int = 2
    socket_timeout_seconds: float = 5.0
    _client: object = field(default=None, repr=False, compare=False)
    _scripts: dict = field(default_factory=dict, repr=False, compare=False)
    _async: object = field(default=None, repr=False, compare=False)

    # Construction ----------------------------------------------------------------------------
    @classmethod
    def from_url(cls, url: str, prefix: str = "fraud:", config: FeatureConfig = DEFAULT_CONFIG, **options) -> "OnlineFeatureStore":
        return cls(url=url, prefix=prefix, config=config, **options)

    @classmethod
    def from_settings(cls, settings, config: FeatureConfig = DEFAULT_CONFIG) -> "OnlineFeatureStore":
        """From :class:`OnlineStoreSettings` (or :class:`PlatformSettings`); resolves the embedded
        server's URL now, so executors get a concrete address."""
        settings = getattr(settings, "online_store", settings)
        try:
            url = settings.resolved_url()
        except RuntimeError as error:
            raise OnlineStoreUnavailable(str(error)) from None
        return cls(
            url=url, prefix=settings.key_prefix, config=config,
            password=settings.password,
            dedupe_ttl_seconds=settings.dedupe_ttl_seconds, tx_index_ttl_seconds=settings.tx_index_ttl_seconds,
            socket_timeout_seconds=settings.socket_timeout_seconds,
        )

    def __repr__(self) -> str:  # never the password (it may be in the URL or its own field)
        return f"OnlineFeatureStore({self.description})"

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_client"], state["_scripts"], state["_async"] = None, {}, None
        return state

    @property
    def description(self) -> str:
        return f"{_redacted(self.url)} (prefix {self.prefix!r})"

    @property
    def entity_ttl_seconds(self) -> int:
        """Idle entities vanish after the longest window plus the open days."""
        return (self.config.history_days() + self.open_days + 1) * 86_400

    def client(self):
        if self._client is None:
            import redis

            options = {"socket_timeout": self.socket_timeout_seconds, "socket_connect_timeout": self.socket_timeout_seconds}
            if self.password:
                options["password"] = self.password
            self._client = redis.Redis.from_url(self.url, **options)
        return self._client

    def async_client(self):
        """The event loop's client of this store (:mod:`fraud_platform.infra.redis_async`): the
        decision API's reads, which must never block its loop."""
        if self._async is None:
            from fraud_platform.infra.redis_async import AsyncRedis

            self._async = AsyncRedis(self.url, self.password, self.socket_timeout_seconds, self.description)
        return self._async

    def _script(self, name: str, source: str):
        if name not in self._scripts:
            self._scripts[name] = self.client().register_script(source)
        return self._scripts[name]

    def _call(self, what: str, action):
        """Run ``action`` and turn any Redis failure into one :class:`OnlineStoreUnavailable` line."""
        import redis

        try:
            return action()
        except redis.exceptions.RedisError as error:
            raise OnlineStoreUnavailable(f"online store {self.description}: {what} failed: {_one_line(error)}") from None

    def key(self, kind: str, name: str) -> str:
        return f"{self.prefix}{kind}:{name}"

    # Health ----------------------------------------------------------------------------------
    def ping(self) -> None:
        self._call("ping", lambda: self.client().ping())

    def close(self) -> None:
        if self._async is not None:
            self._async.close()
            self._async = None
        if self._client is not None:
            self._client.close()
            self._client = None
            self._scripts = {}

    def _run_script(self, name: str, source: str, head: list, rows: np.ndarray) -> list:
        """Run a Lua script over ``rows`` (one row = one item's arguments) in chunks of ``_CHUNK``
        items, all in one pipelined round trip; returns each chunk's reply."""
        script = _lua_script(source)

        def queue(pipe) -> None:
            for start in range(0, len(rows), _CHUNK):
                script.queue(pipe, [], head + rows[start:start + _CHUNK].ravel().tolist())

        return self._call(name, lambda: execute_loading(self.client(), queue))

    # Writes ----------------------------------------------------------------------------------
    def apply_transactions(self, events: pd.DataFrame) -> dict[str, int]:
        """Add transactions to the state; idempotent (a transaction is applied once, ever within
        the index TTL). Returns counts: ``applied`` and ``labels`` (pending labels resolved)."""
        if events.empty:
            return {"applied": 0, "labels": 0}
        rows = event_rows(events)
        args = np.column_stack([
            rows["transaction_id"].to_numpy(object), rows["customer_key"].to_numpy(object),
            rows["terminal_id"].to_numpy(object), rows["time"].astype(str).to_numpy(object),
            rows["cents"].astype(str).to_numpy(object), rows["day"].astype(str).to_numpy(object),
        ])
        head = [self.prefix, self.tx_index_ttl_seconds, self.entity_ttl_seconds, self.open_days, self.config.history_days()]
        results = self._run_script("apply_transactions", _APPLY_TRANSACTIONS, head, args)
        return {"applied": sum(int(r[0]) for r in results), "labels": sum(int(r[1]) for r in results)}

    def apply_labels(self, labels: pd.DataFrame) -> dict[str, int]:
        """Add fraud labels (``transaction_id``, ``known_at`` or ``label_known_at``, optional
        ``is_fraud``); idempotent. A label whose transaction is not applied yet waits for it."""
        frame = labels
        if "is_fraud" in frame:
            frame = frame[frame["is_fraud"].fillna(0).astype(bool)]
        known_column = "label_known_at" if "label_known_at" in frame else "known_at"
        frame = frame[frame[known_column].notna()]
        if frame.empty:
            return {"applied": 0, "pending": 0}
        known = timestamps_us(frame[known_column]).astype(str)
        args = np.column_stack([frame["transaction_id"].astype(str).to_numpy(object), known.astype(object)])
        results = self._run_script("apply_labels", _APPLY_LABELS, [self.prefix, self.tx_index_ttl_seconds], args)
        return {"applied": sum(int(r[0]) for r in results), "pending": sum(int(r[1]) for r in results)}

    def claim_ids(self, transaction_ids, token: str) -> np.ndarray:
        """True where this is the id's first sighting within the dedupe TTL, or the id was claimed
        with the same ``token`` (a replayed batch is not its own duplicate); repeats within the call
        are False after their first occurrence."""
        ids = pd.Series(np.asarray(transaction_ids, dtype=object)).astype(str)
        first = ~ids.duplicated().to_numpy()
        result = np.zeros(len(ids), dtype=bool)
        unique_ids = ids[first].tolist()
        if not unique_ids:
            return result
        parts = self._run_script("claim_ids", _CLAIM, [self.prefix, self.dedupe_ttl_seconds, token],
                                 np.asarray(unique_ids, dtype=object)[:, None])
        result[np.flatnonzero(first)] = np.frombuffer(b"".join(parts), dtype=np.uint8) == ord("1")
        return result

    # Reads -----------------------------------------------------------------------------------
    def history(self, customers, terminals) -> EntityHistory:
        """The stored state of these entities (one round trip)."""
        history, _ = self._read(list(pd.unique(np.asarray(customers, dtype=object))),
                                list(pd.unique(np.asarray(terminals, dtype=object))), [])
        return history

    def features(self, events: pd.DataFrame) -> pd.DataFrame:
        """``transaction_id`` + feature columns for ``events`` (processed-row shape), index aligned:
        the values :func:`compute_batch_features` gives over the store's history plus the earlier
        events of this call, with the labels the store knows before each event."""
        if events.empty:
            return features_on_history(EntityHistory.from_rows([], [], [], []), events, config=self.config)
        customers = list(pd.unique(events["customer_key"].astype(str)))
        terminals = list(pd.unique(events["terminal_id"].astype(str)))
        history, applied = self._read(customers, terminals, events["transaction_id"].astype(str).tolist())
        return features_on_history(history, events, in_history=applied, config=self.config)

    def _read(self, customers: list[str], terminals: list[str], transaction_ids: list[str]) -> tuple[EntityHistory, np.ndarray]:
        # Several short scripts in one round trip: a script blocks the server while it runs, and the
        # decision API reads the same server (a 100k-record backlog batch must not stall it for 1 s).
        calls = [(chunk, [], []) for chunk in _chunks(customers)] + [([], chunk, []) for chunk in _chunks(terminals)]
        calls += [([], [], chunk) for chunk in _chunks(transaction_ids)]

        def queue(pipe) -> None:
            for c, t, x in calls:
                _READ_HISTORY_SCRIPT.queue(pipe, [], [self.prefix, len(c), len(t), *c, *t, *x])

        hashes, bits = [], []
        for reply in self._call("read", lambda: execute_loading(self.client(), queue)):
            *joined, applied_bits = reply.split(b"\x1e")
            hashes += joined
            bits.append(applied_bits)
        applied = np.frombuffer(b"".join(bits), dtype=np.uint8) == ord("1")
        return decode_history_joined(customers, hashes[:len(customers)], terminals, hashes[len(customers):]), applied

    def entity_rows(self, customer: str, terminal: str) -> tuple[list[tuple], list[tuple], list[tuple], list[tuple]]:
        """One customer's and one terminal's state as row tuples (one pipelined round trip), for
        :func:`fraud_platform.domain.features.features_of_one`: the decision API's per-request read."""

        def run():
            pipe = self.client().pipeline(transaction=False)
            pipe.hgetall(self.key("c", customer))
            pipe.hgetall(self.key("t", terminal))
            return pipe.execute()

        customer_fields, terminal_fields = self._call("read", run)
        return decode_rows([customer], [customer_fields], [terminal], [terminal_fields])

    def entity_rows_many(self, pairs: list[tuple[str, str]], alongside: Callable[[Any], None] | None = None
                         ) -> tuple[str, list[tuple[list, list, list, list]], list]:
        """(state version, each (customer, terminal) pair's :meth:`entity_rows`, the replies of the
        commands ``alongside`` queued on the pipeline): the decision API's whole read, ONE round trip."""
        def queue(pipe) -> None:
            if alongside is not None:
                alongside(pipe)
            _READ_ENTITIES_SCRIPT.queue(pipe, [], [self.prefix, *(x for pair in pairs for x in pair)])

        *extra, reply = self._call("read", lambda: execute_loading(self.client(), queue))
        rows = [joined_entity_rows(customer, terminal, reply[2 * i + 1], reply[2 * i + 2])
                for i, (customer, terminal) in enumerate(pairs)]
        return reply[0].decode(), rows, extra

    def state_version(self) -> str:
        """Changes whenever the state does: snapshot version + counts of applied transactions/labels."""
        meta = self._call("state_version", lambda: self.client().hgetall(self.prefix + "meta"))
        meta = {k.decode(): v.decode() for k, v in meta.items()}
        return f"{meta.get('snapshot_version', 'empty')}+tx{meta.get('tx_applied', 0)}+lb{meta.get('labels_applied', 0)}"

    def used_memory(self) -> int:
        return int(self._call("info", lambda: self.client().info("memory"))["used_memory"])

    def entity_count(self) -> dict[str, int]:
        """Customers and terminals held (SCAN; for metadata and benchmarks, not hot paths)."""

        def run():
            client = self.client()
            return {kind: sum(1 for _ in client.scan_iter(match=f"{self.prefix}{code}:*", count=10_000))
                    for kind, code in (("customers", "c"), ("terminals", "t"))}

        return self._call("scan", run)

    # Materialisation -------------------------------------------------------------------------
    def materialise(self, snapshot: FeatureSnapshot, transactions: pd.DataFrame | None = None) -> dict:
        """Write a batch :class:`FeatureSnapshot` (Feast's "materialize"): for its entities it
        replaces the state before ``snapshot.as_of`` (what the stream stored after it stays); the
        stream applies events from ``as_of`` on (earlier ones only enter the transaction index). ``transactions`` (optional, processed-row shape) indexes
        the snapshot's recent transactions so their labels still arriving find their terminal.
        Returns counts and bytes for asset metadata.
        """
        if snapshot.config != self.config:
            raise ValueError("the snapshot's feature config differs from the store's")
        before = self.used_memory()
        customers: dict[str, dict[str, str]] = {}
        for key, day, n, cents in _bucket_rows(snapshot.customer_activity, "customer_key", ["n", "cents"]):
            customers.setdefault(key, {})[f"b:{day}"] = f"{n},{cents}"
        pairs = snapshot.customer_terminals
        for key, terminal, time in zip(pairs["customer_key"], pairs["terminal_id"], pairs["time"]):
            customers.setdefault(key, {})[f"p:{terminal}"] = str(int(time))
        terminals: dict[str, dict[str, str]] = {}
        for key, day, n in _bucket_rows(snapshot.terminal_activity, "terminal_id", ["n"]):
            terminals.setdefault(key, {})[f"b:{day}"] = str(n)
        frauds = snapshot.terminal_frauds
        for key, day, known, n in zip(frauds["terminal_id"], frauds["tx_day"], frauds["time"], frauds["n"]):
            terminals.setdefault(key, {})[f"s:{int(day)}:{int(known)}"] = str(int(n))
        indexed = 0
        ttl = self.entity_ttl_seconds

        script = self._script("materialise", _MATERIALISE)
        head = [snapshot.as_of_us, ttl]

        def run():
            nonlocal indexed
            pipe = self.client().pipeline(transaction=False)
            for kind, entities in (("c", customers), ("t", terminals)):
                for i, (name, mapping) in enumerate(entities.items()):
                    script(keys=[self.key(kind, name)], args=head + [x for item in mapping.items() for x in item], client=pipe)
                    if i % 5000 == 4999:
                        pipe.execute()
            if transactions is not None and len(transactions):
                rows = event_rows(transactions)
                recent = rows[rows["time"] >= snapshot.as_of_us - self.tx_index_ttl_seconds * 1_000_000]
                for i, (tx, day, time, terminal) in enumerate(zip(recent["transaction_id"], recent["day"], recent["time"], recent["terminal_id"])):
                    pipe.set(self.key("x", tx), f"{day},{time},{terminal}", ex=self.tx_index_ttl_seconds)
                    if i % 20000 == 19999:
                        pipe.execute()
                indexed = len(recent)
            meta = self.prefix + "meta"
            pipe.hset(meta, mapping={"as_of_us": str(snapshot.as_of_us), "snapshot_version": snapshot.version,
                                     "max_day": str(max(snapshot.as_of_us // US_PER_DAY, self._max_day()))})
            pipe.execute()

        self._call("materialise", run)
        return {
            "as_of": snapshot.as_of.isoformat(),
            "snapshot_version": snapshot.version,
            "customers_written": len(customers),
            "terminals_written": len(terminals),
            "fields_written": int(sum(len(m) for m in customers.values()) + sum(len(m) for m in terminals.values())),
            "transactions_indexed": indexed,
            "used_memory_bytes": self.used_memory(),
            "bytes_added": self.used_memory() - before,
        }

    def _max_day(self) -> int:
        value = self.client().hget(self.prefix + "meta", "max_day")
        return int(value) if value is not None else -1

    def clear(self) -> int:
        """Delete every key under the prefix (tests, benchmarks, a full rebuild)."""

        def run():
            client = self.client()
            deleted = 0
            batch = []
            for key in client.scan_iter(match=f"{self.prefix}*", count=10_000):
                batch.append(key)
                if len(batch) >= 10_000:
                    deleted += client.delete(*batch)
                    batch = []
            if batch:
                deleted += client.delete(*batch)
            return deleted

        return self._call("clear", run)


def _chunks(items: list, size: int = _CHUNK) -> list[list]:
    return [items[start:start + size] for start in range(0, len(items), size)]


def _fields(joined: bytes) -> dict[bytes, bytes]:
    parts = joined.split(b"\n") if joined else []
    return dict(zip(parts[::2], parts[1::2]))


def joined_entity_rows(customer: str, terminal: str, customer_joined: bytes, terminal_joined: bytes):
    """:meth:`OnlineFeatureStore.entity_rows` of one pair from ``READ_LUA``'s joined hashes."""
    return decode_rows([customer], [_fields(customer_joined)], [terminal], [_fields(terminal_joined)])


def _bucket_rows(table: pd.DataFrame, key: str, values: list[str]):
    days = (table["time"].to_numpy(dtype="int64") // US_PER_DAY)
    return zip(table[key].to_numpy(object), days, *(table[v].to_numpy(dtype="int64") for v in values))


def decode_history(customers: list[str], customer_hashes: list[dict], terminals: list[str],
                   terminal_hashes: list[dict]) -> EntityHistory:
    """Stored hash fields (see the module docstring) -> the feature core's activity rows."""
    return EntityHistory.from_rows(*decode_rows(customers, customer_hashes, terminals, terminal_hashes))


def _joined_fields(entities: list[str], joined: list[bytes]):
    """(owner entity per field, field names, values, kinds = names' first two bytes, names' rest)
    of hashes joined as ``field\nvalue\n...`` (Arrow arrays; owner an object array; kind a
    boolean mask per field kind)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    tokens: list[bytes] = []
    counts = np.zeros(len(joined), dtype="int64")
    for i, blob in enumerate(joined):
        if blob:
            parts = blob.split(b"\n")
            tokens.extend(parts)
            counts[i] = len(parts) // 2
    owner = np.asarray(entities, dtype=object)[np.repeat(np.arange(len(joined)), counts)]
    names, values = pa.array(tokens[0::2], pa.binary()), pa.array(tokens[1::2], pa.binary())
    kinds = pc.binary_slice(names, 0, 2)
    kind = {k: pc.equal(kinds, pa.scalar(k, pa.binary())).to_numpy(zero_copy_only=False) for k in (b"e:", b"b:", b"p:", b"f:", b"s:")}
    return owner, names, values, kind, pc.utf8_slice_codeunits(names.cast(pa.string()), 2)


def _parts(values, at: np.ndarray, n: int, separator: str = ","):
    """The first ``n`` ``separator``-separated parts of ``values[at]``: ints, the last as str."""
    import pyarrow as pa
    import pyarrow.compute as pc

    split = pc.split_pattern(values.take(pa.array(at, pa.int64())), separator, max_splits=n - 1)
    return [pc.list_element(split, k).cast(pa.string()) for k in range(n)]


def _ints(array) -> np.ndarray:
    import pyarrow as pa

    return array.cast(pa.string()).cast(pa.int64()).to_numpy(zero_copy_only=False)


def decode_history_joined(customers: list[str], customer_joined: list[bytes], terminals: list[str],
                          terminal_joined: list[bytes]) -> EntityHistory:
    """:func:`decode_history` of hashes joined as ``field\nvalue\n...`` (the batch read's reply),
    column-wise in Arrow: the same rows in the same order, without a Python loop per hash field
    (that loop cost ~20 us per scored record in a micro-batch)."""
    owner, names, values, kind, rest = _joined_fields(customers, customer_joined)
    n = len(names)
    time, count, cents = np.zeros(n, "int64"), np.zeros(n, "int64"), np.zeros(n, "int64")
    pair_terminal, pair_time = np.empty(n, dtype=object), np.zeros(n, "int64")
    e, b, p = (np.flatnonzero(kind[k]) for k in (b"e:", b"b:", b"p:"))
    if len(e):
        e_time, e_cents, e_terminal = _parts(values, e, 3)
        time[e], cents[e], count[e] = _ints(e_time), _ints(e_cents), 1
        pair_terminal[e], pair_time[e] = e_terminal.to_numpy(zero_copy_only=False), time[e]
    if len(b):
        b_n, b_cents = _parts(values, b, 2)
        time[b], count[b], cents[b] = _ints(rest.take(b)) * US_PER_DAY, _ints(b_n), _ints(b_cents)
    if len(p):
        pair_terminal[p] = rest.take(p).cast("string").to_numpy(zero_copy_only=False)
        pair_time[p] = _ints(values.take(p))
    activity = np.flatnonzero(kind[b"e:"] | kind[b"b:"])
    pairs = np.flatnonzero(kind[b"e:"] | kind[b"p:"])
    customer_activity = pd.DataFrame({"customer_key": owner[activity], "time": time[activity], "n": count[activity],
                                      "cents": cents[activity]})
    customer_terminals = pd.DataFrame({"customer_key": owner[pairs], "terminal_id": pair_terminal[pairs], "time": pair_time[pairs]})

    owner, names, values, kind, rest = _joined_fields(terminals, terminal_joined)
    n = len(names)
    day, known, count = np.zeros(n, "int64"), np.zeros(n, "int64"), np.zeros(n, "int64")
    b, f, s = (np.flatnonzero(kind[k]) for k in (b"b:", b"f:", b"s:"))
    if len(b):
        day[b], count[b] = _ints(rest.take(b)), _ints(values.take(b))
    if len(f):
        f_day, f_known = _parts(values, f, 2)
        day[f], known[f], count[f] = _ints(f_day), _ints(f_known), 1
    if len(s):
        s_day, s_known = _parts(rest, s, 2, ":")
        day[s], known[s], count[s] = _ints(s_day), _ints(s_known), _ints(values.take(s))
    frauds = np.flatnonzero(kind[b"f:"] | kind[b"s:"])
    terminal_activity = pd.DataFrame({"terminal_id": owner[b], "time": day[b] * US_PER_DAY, "n": count[b]})
    terminal_frauds = pd.DataFrame({"terminal_id": owner[frauds], "tx_day": day[frauds], "time": known[frauds], "n": count[frauds]})
    return EntityHistory(customer_activity, customer_terminals, terminal_activity, terminal_frauds)


def decode_rows(customers: list[str], customer_hashes: list[dict], terminals: list[str],
                terminal_hashes: list[dict]) -> tuple[list[tuple], list[tuple], list[tuple], list[tuple]]:
    """Stored hash fields -> :meth:`EntityHistory.from_rows` tuples (no DataFrames: the API's
    per-request path reads one customer and one terminal and needs microseconds, not milliseconds)."""
    activity, pairs, term_activity, frauds = [], [], [], []
    for customer, fields in zip(customers, customer_hashes):
        for name, value in fields.items():
            kind, rest = name[:2], name[2:]
            if kind == b"e:":
                time, cents, terminal = value.split(b",", 2)
                activity.append((customer, int(time), 1, int(cents)))
                pairs.append((customer, terminal.decode(), int(time)))
            elif kind == b"b:":
                n, cents = value.split(b",", 1)
                activity.append((customer, int(rest) * US_PER_DAY, int(n), int(cents)))
            elif kind == b"p:":
                pairs.append((customer, rest.decode(), int(value)))
    for terminal, fields in zip(terminals, terminal_hashes):
        for name, value in fields.items():
            kind, rest = name[:2], name[2:]
            if kind == b"b:":
                term_activity.append((terminal, int(rest) * US_PER_DAY, int(value)))
            elif kind == b"f:":
                day, known = value.split(b",", 1)
                frauds.append((terminal, int(day), int(known), 1))
            elif kind == b"s:":
                day, known = rest.split(b":", 1)
                frauds.append((terminal, int(day), int(known), int(value)))
    return activity, pairs, term_activity, frauds


__all__ = ["OnlineFeatureStore", "OnlineStoreUnavailable", "decode_history"]
