"""Point-in-time transaction features: ONE implementation for batch training and the streaming scorer.

Every feature of a transaction at time ``t`` (UTC day ``D``) uses only transactions strictly before
``t`` and only fraud labels with ``label_known_at < t``. Windows are day-aligned so that history can
be compacted into exact per-entity daily buckets (see docs/features.md):

* customer window ``N`` = transactions from 00:00 UTC of day ``D-N`` up to (excluding) ``t``
  (the ``N`` previous full days plus the current day so far);
* terminal window ``N`` = the ``N`` full days ending ``delay`` days before ``D``
  (days ``D-delay-N .. D-delay-1``, FDH's delayed terminal risk), plus undelayed "recent" windows
  (days ``D-N .. D-1``); a fraud only counts if its label was known before ``t``.

Both paths feed the same core (:func:`_compute`) with "activity rows": the batch path passes raw
events, the online path passes a :class:`FeatureSnapshot` (per-entity daily buckets) plus the
micro-batch. Amounts are summed in integer cents, so bucketed and raw sums
are bit-identical and the two paths give exactly the same values. No Dagster or Spark in here: the
streaming scorer imports this module as is.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:  # the lake store is only needed for (de)serialisation helpers
    from fraud_platform.infra.lake import LakeStore

US_PER_DAY = 86_400_000_000
US_PER_HOUR = 3_600_000_000
_EPOCH = pd.Timestamp(0, tz="UTC")


@dataclass(frozen=True)
class FeatureConfig:
    """Window lengths (days). Changing them changes the features, so the snapshot records them."""

    customer_windows: tuple[int, ...] = (1, 7, 30)
    amount_ratio_windows: tuple[int, ...] = (7, 30)  # amount / customer mean over these windows
    # Customer baseline = full days D-end .. D-start-1 (default D-30 .. D-15): FDH card compromises
    # last 14 days, so their inflated amounts never reach the baseline of a still-compromised card.
    customer_baseline_days: tuple[int, int] = (14, 30)
    terminal_windows: tuple[int, ...] = (1, 7, 30)
    terminal_delay_days: int = 7
    # Undelayed terminal windows (days D-N .. D-1): labels known before t already count, so a
    # freshly compromised terminal shows up before FDH's delayed window reaches it.
    terminal_recent_windows: tuple[int, ...] = (1, 7, 28)
    # Days since the latest / earliest known fraud at the terminal within this many days: FDH
    # compromises last 28 days, so age tells an ongoing compromise from one that has ended.
    terminal_fraud_age_days: int = 35
    new_terminal_days: int = 30
    # "No previous transaction" and very old ones read as this gap, which keeps features finite
    # (SMOTE cannot handle NaN) and lets the snapshot forget customers older than the cap.
    gap_cap_days: int = 30

    def __post_init__(self) -> None:
        if not set(self.amount_ratio_windows) <= set(self.customer_windows):
            raise ValueError("amount_ratio_windows must be a subset of customer_windows")

    def feature_columns(self) -> list[str]:
        cols = ["amount_eur", "hour", "is_night", "is_weekend"]
        for n in self.customer_windows:
            cols += [f"customer_tx_count_{n}d", f"customer_mean_amount_{n}d"]
        cols += [f"customer_amount_to_mean_{n}d" for n in self.amount_ratio_windows]
        cols += ["customer_amount_to_baseline"]
        cols += [f"customer_mean_{n}d_to_baseline" for n in self.baseline_compared_windows()]
        cols += ["customer_seconds_since_prev", "customer_new_terminal"]
        for n in self.terminal_windows:
            cols += [f"terminal_tx_count_{n}d", f"terminal_fraud_count_{n}d", f"terminal_fraud_rate_{n}d"]
        for n in self.terminal_recent_windows:
            cols += [f"terminal_tx_count_recent_{n}d", f"terminal_fraud_count_recent_{n}d",
                     f"terminal_fraud_rate_recent_{n}d"]
        cols += ["terminal_days_since_last_fraud", "terminal_days_since_first_fraud"]
        return cols

    def baseline_compared_windows(self) -> tuple[int, ...]:
        """Customer windows that do not overlap the baseline: their mean / baseline mean is a feature."""
        return tuple(n for n in self.customer_windows if n <= self.customer_baseline_days[0])

    def history_days(self) -> int:
        """How many closed days of history any feature can reach back."""
        return max(
            max(self.customer_windows),
            max(self.customer_baseline_days),
            self.terminal_delay_days + max(self.terminal_windows),
            max(self.terminal_recent_windows, default=0),
            self.terminal_fraud_age_days,
            self.new_terminal_days,
            self.gap_cap_days,
        )


DEFAULT_CONFIG = FeatureConfig()
FEATURE_COLUMNS: list[str] = DEFAULT_CONFIG.feature_columns()


# --------------------------------------------------------------------------------------------
# Normalisation of inputs into integer microsecond "activity rows"
# --------------------------------------------------------------------------------------------


def _to_us(values: pd.Series) -> np.ndarray:
    """UTC timestamps (any unit, tz-aware or naive-as-UTC) -> int64 microseconds since epoch."""
    # Already tz-aware: skip to_datetime, which costs ~1 us a row even then.
    ts = values if isinstance(getattr(values, "dtype", None), pd.DatetimeTZDtype) else pd.to_datetime(values, utc=True)
    return ((ts - _EPOCH) // pd.Timedelta(microseconds=1)).to_numpy(dtype="int64")


def _events(transactions: pd.DataFrame) -> pd.DataFrame:
    """The columns features need, normalised; row order preserved."""
    time = _to_us(transactions["event_time"])
    return pd.DataFrame(
        {
            "transaction_id": transactions["transaction_id"].astype(str).to_numpy(),
            "customer_key": transactions["customer_key"].astype(str).to_numpy(),
            "terminal_id": transactions["terminal_id"].astype(str).to_numpy(),
            "amount_eur": transactions["amount_eur"].astype("float64").to_numpy(),
            "cents": np.rint(transactions["amount_eur"].astype("float64").to_numpy() * 100).astype("int64"),
            "time": time,
            "day": time // US_PER_DAY,
        }
    )


def _fraud_labels(labels: pd.DataFrame | None, transactions: pd.DataFrame | None) -> pd.DataFrame:
    """Known frauds as (terminal_id, tx_day, time=label_known_at_us, n=1).

    ``labels`` needs ``transaction_id`` and ``label_known_at`` (rows with ``is_fraud == 0`` are
    dropped if the column exists; several fraud labels of one transaction count once, from the
    earliest, as in the online store); ``terminal_id``/``event_time`` are joined from ``transactions``
    when absent (the online path must supply them, as the snapshot keeps no transaction index).
    """
    empty = pd.DataFrame({"terminal_id": pd.Series(dtype=object), "tx_day": pd.Series(dtype="int64"),
                          "time": pd.Series(dtype="int64"), "n": pd.Series(dtype="int64")})
    if labels is None:
        if transactions is None or "label_known_at" not in transactions:
            return empty
        labels = transactions
    frame = labels
    if "is_fraud" in frame:
        frame = frame[frame["is_fraud"].fillna(0).astype(int) == 1]
    frame = frame[frame["label_known_at"].notna()]
    if "transaction_id" in frame:  # verdict then chargeback: one fraud, known from the earliest (as online)
        frame = frame.sort_values("label_known_at", kind="stable").drop_duplicates("transaction_id")
    if not {"terminal_id", "event_time"} <= set(frame.columns):
        if transactions is None:
            raise ValueError("labels need terminal_id and event_time when no transactions are given")
        lookup = transactions[["transaction_id", "terminal_id", "event_time"]]
        frame = frame[["transaction_id", "label_known_at"]].merge(lookup, on="transaction_id", how="inner")
    if frame.empty:
        return empty
    return pd.DataFrame(
        {
            "terminal_id": frame["terminal_id"].astype(str).to_numpy(),
            "tx_day": _to_us(frame["event_time"]) // US_PER_DAY,
            "time": _to_us(frame["label_known_at"]),
            "n": np.ones(len(frame), dtype="int64"),
        }
    )


@dataclass(frozen=True)
class _State:
    """History as activity rows; raw events and daily buckets look the same to the core."""

    customer_activity: pd.DataFrame  # customer_key, time, n, cents
    customer_terminals: pd.DataFrame  # customer_key, terminal_id, time (last seen)
    terminal_activity: pd.DataFrame  # terminal_id, time, n
    terminal_frauds: pd.DataFrame  # terminal_id, tx_day, time (label known), n

    @classmethod
    def from_events(cls, events: pd.DataFrame, frauds: pd.DataFrame) -> "_State":
        ones = np.ones(len(events), dtype="int64")
        return cls(
            customer_activity=pd.DataFrame(
                {"customer_key": events["customer_key"], "time": events["time"], "n": ones, "cents": events["cents"]}
            ),
            customer_terminals=events[["customer_key", "terminal_id", "time"]].reset_index(drop=True),
            terminal_activity=pd.DataFrame({"terminal_id": events["terminal_id"], "time": events["time"], "n": ones}),
            terminal_frauds=frauds.reset_index(drop=True),
        )

    def concat(self, other: "_State") -> "_State":
        return _State(
            *(
                pd.concat([getattr(self, f), getattr(other, f)], ignore_index=True)
                for f in ("customer_activity", "customer_terminals", "terminal_activity", "terminal_frauds")
            )
        )

    def restricted_to(self, customers: np.ndarray, terminals: np.ndarray) -> "_State":
        """Only the rows of these entities: every feature is per customer or per terminal, so a
        micro-batch's features need just its own entities' history (cost ~ batch, not ~ state)."""
        customers, terminals = pd.unique(customers), pd.unique(terminals)
        return _State(
            customer_activity=self.customer_activity[self.customer_activity["customer_key"].isin(customers)],
            customer_terminals=self.customer_terminals[self.customer_terminals["customer_key"].isin(customers)],
            terminal_activity=self.terminal_activity[self.terminal_activity["terminal_id"].isin(terminals)],
            terminal_frauds=self.terminal_frauds[self.terminal_frauds["terminal_id"].isin(terminals)],
        )


# --------------------------------------------------------------------------------------------
# The core: prefix sums per entity, looked up with "time < at" semantics
# --------------------------------------------------------------------------------------------


Columns = Mapping[str, np.ndarray]  # a DataFrame, or column name -> array (what the core passes)


class _AsOf:
    """As-of lookup: for each query (keys, at), the row with the same keys and the latest time < at.

    Rows are sorted once by (keys, time). A lookup sorts rows and queries together, a query ahead of
    rows with its exact time (strictly before), and carries the last row index forward: plain numpy
    on the integer keys from :func:`_integer_keys`, several times cheaper than ``merge_asof``.
    """

    def __init__(self, rows: Columns, keys: list[str]) -> None:
        self.keys = keys
        columns = [np.asarray(rows[k]) for k in keys]
        time = np.asarray(rows["time"], dtype="int64")
        self.order = np.lexsort((time, *reversed(columns)))
        self.columns = [column[self.order] for column in columns]
        self.time = time[self.order]

    def last(self, query: Columns, at: np.ndarray) -> np.ndarray:
        """Sorted-row index of each query's match, -1 when there is none."""
        n, m = len(self.time), len(at)
        if n == 0 or m == 0:
            return np.full(m, -1, dtype="int64")
        wanted = [np.asarray(query[k]) for k in self.keys]
        keys = [np.concatenate([mine, theirs]) for mine, theirs in zip(self.columns, wanted)]
        time = np.concatenate([self.time, np.asarray(at, dtype="int64")])
        is_row = np.concatenate([np.ones(n, dtype=np.int8), np.zeros(m, dtype=np.int8)])
        order = np.lexsort((is_row, time, *reversed(keys)))
        carried = np.maximum.accumulate(np.where(order < n, order, -1))
        at_query = order >= n
        found, asked = carried[at_query], order[at_query] - n
        same = found >= 0
        for mine, theirs in zip(self.columns, wanted):
            same &= mine[np.maximum(found, 0)] == theirs[asked]
        result = np.empty(m, dtype="int64")
        result[asked] = np.where(same, found, -1)
        return result


class _Prefix:
    """Running aggregate of ``values`` per key over time; ``before(keys, at)`` = aggregate over rows < at.

    ``how="sum"`` gives prefix sums (window = difference of two lookups); ``"max"``/``"min"`` give
    running extremes, ``fill`` where a key has no row before ``at``. Integer arithmetic only, in
    numpy: the streaming scorer builds a few of these per micro-batch, where pandas' groupby cost
    more than the lookups.
    """

    def __init__(self, rows: Columns, keys: list[str], values: list[str], how: str = "sum", fill: int = 0) -> None:
        self.values, self.fill = values, fill
        self.index = _AsOf(rows, keys)
        amounts = np.column_stack([np.asarray(rows[v], dtype="int64") for v in values])[self.index.order]
        new_key = np.zeros(len(amounts), dtype=bool)
        new_key[:1] = True
        for column in self.index.columns:
            new_key[1:] |= column[1:] != column[:-1]
        run = np.cumsum(new_key) - 1  # which key's run each sorted row is in
        self.running = _running(amounts, run, np.flatnonzero(new_key), how)

    def before(self, query: Columns, at: np.ndarray) -> dict[str, np.ndarray]:
        found = self.index.last(query, at)
        if not len(self.running):
            return {v: np.full(len(found), self.fill, dtype="int64") for v in self.values}
        picked = self.running[np.maximum(found, 0)]
        return {v: np.where(found >= 0, picked[:, i], self.fill) for i, v in enumerate(self.values)}


def _running(amounts: np.ndarray, run: np.ndarray, starts: np.ndarray, how: str) -> np.ndarray:
    """Cumulative sum / max / min of ``amounts`` (rows x values, int64) restarting at each run."""
    if len(amounts) == 0:
        return amounts
    if how == "sum":
        total = np.cumsum(amounts, axis=0)
        return total - (total[starts] - amounts[starts])[run]
    if how not in ("max", "min"):
        raise ValueError(f"how must be sum, max or min, not {how!r}")
    # Lift each run above every earlier one (run * span), so one global accumulate never carries a
    # value across runs; a min is a max of the values mirrored within [low, high].
    low, high = int(amounts.min()), int(amounts.max())
    span = high - low + 1
    if (int(run[-1]) + 1) * span >= 2**62:  # cannot lift without overflow: per-run accumulate
        return pd.DataFrame(amounts).groupby(run, sort=False).transform(f"cum{how}").to_numpy(dtype="int64")
    shifted = (amounts - low) if how == "max" else (high - amounts)
    lift = (run * span)[:, None]
    lifted = np.maximum.accumulate(shifted + lift, axis=0) - lift
    return lifted + low if how == "max" else high - lifted


def _last_before(rows: Columns, keys: list[str], query: Columns, at: np.ndarray) -> np.ndarray:
    """Latest row time < at per key (int64 us), -1 when there is none."""
    index = _AsOf(rows, keys)
    found = index.last(query, at)
    return np.where(found >= 0, index.time[np.maximum(found, 0)], -1) if len(index.time) else found


def _known_frauds(frauds: Columns, queries: Columns, day: np.ndarray, t: np.ndarray, n: int,
                  delay: int, how: str = "sum") -> np.ndarray:
    """Per query, over the frauds at its terminal with transaction day in [D-delay-n, D-delay-1] and
    label known < t: their count (``how="sum"``) or latest/earliest transaction day (``"max"``/``"min"``,
    -1 when there is none)."""
    value, fill = ("n", 0) if how == "sum" else ("tx_day", -1)
    out = np.full(len(t), fill, dtype="int64")
    tx_day = np.asarray(frauds["tx_day"])
    terminals = np.asarray(queries["terminal_id"])
    for d in np.unique(day):
        window = (tx_day >= d - delay - n) & (tx_day <= d - delay - 1)
        if not window.any():
            continue
        mask = day == d
        prefix = _Prefix({k: np.asarray(frauds[k])[window] for k in ("terminal_id", "time", value)},
                         ["terminal_id"], [value], how=how, fill=fill)
        out[mask] = prefix.before({"terminal_id": terminals[mask]}, t[mask])[value]
    return out


_ENTITY_COLUMNS = ("customer_key", "terminal_id")


def _integer_keys(state: _State, queries: pd.DataFrame) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """State tables and queries as columns of numpy arrays, entity ids replaced by shared integer codes.

    Every lookup joins on entity ids; hashing the strings once here instead of in each of the
    ~20 as-of joins makes the core several times faster and changes no value. Plain arrays from
    here on: a DataFrame column lookup costs more than many of the core's numpy calls.
    """
    frames = {name: {c: getattr(state, name)[c].to_numpy() for c in getattr(state, name).columns}
              for name in state.__dataclass_fields__}
    frames["_queries"] = {c: queries[c].to_numpy() for c in queries.columns}
    for column in _ENTITY_COLUMNS:
        holders = [name for name, frame in frames.items() if column in frame]
        codes, _ = pd.factorize(np.concatenate([frames[name][column].astype(object) for name in holders]))
        start = 0
        for name in holders:
            size = len(frames[name][column])
            frames[name][column] = codes[start:start + size]
            start += size
    queries_columns = frames.pop("_queries")
    return frames, queries_columns


def _compute(state: _State, queries: pd.DataFrame, config: FeatureConfig) -> pd.DataFrame:
    """Features for ``queries`` (normalised events) given history ``state`` (may include them)."""
    tables, queries = _integer_keys(state, queries)
    t = np.asarray(queries["time"], dtype="int64")
    day = np.asarray(queries["day"], dtype="int64")
    midnight = lambda d: d * US_PER_DAY  # noqa: E731 - local shorthand
    out: dict[str, np.ndarray] = {"amount_eur": np.asarray(queries["amount_eur"], dtype="float64")}

    hour = (t // US_PER_HOUR) % 24
    weekday = (day + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    out["hour"] = hour.astype("float64")
    out["is_night"] = ((hour >= 22) | (hour < 6)).astype("float64")
    out["is_weekend"] = (weekday >= 5).astype("float64")

    # Customer spending: cum(t) - cum(00:00 of D-N).
    cust = _Prefix(tables["customer_activity"], ["customer_key"], ["n", "cents"])
    upto = cust.before(queries, t)

    def spend(since: np.ndarray, until: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(count, mean amount or 0) of the customer's transactions in [since, until)."""
        start = cust.before(queries, since)
        count = until["n"] - start["n"]
        cents = until["cents"] - start["cents"]
        return count, np.divide(cents / 100.0, count, out=np.zeros(len(count)), where=count > 0)

    def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
        return np.divide(numerator, denominator, out=np.ones(len(t)), where=denominator > 0)

    means: dict[int, np.ndarray] = {}
    for n in config.customer_windows:
        count, means[n] = spend(midnight(day - n), upto)
        out[f"customer_tx_count_{n}d"] = count.astype("float64")
        out[f"customer_mean_amount_{n}d"] = means[n]
    for n in config.amount_ratio_windows:
        out[f"customer_amount_to_mean_{n}d"] = ratio(out["amount_eur"], means[n])
    recent, oldest = config.customer_baseline_days
    _, baseline = spend(midnight(day - oldest), cust.before(queries, midnight(day - recent)))
    out["customer_amount_to_baseline"] = ratio(out["amount_eur"], baseline)
    for n in config.baseline_compared_windows():
        out[f"customer_mean_{n}d_to_baseline"] = ratio(means[n], baseline)

    # Behaviour: gap since the customer's previous transaction; terminal unseen in the window.
    cap_us = config.gap_cap_days * US_PER_DAY
    last_any = _last_before(tables["customer_terminals"], ["customer_key"], queries, t)
    gap = np.where(last_any >= 0, np.minimum(t - last_any, cap_us), cap_us)
    out["customer_seconds_since_prev"] = gap / 1e6
    last_pair = _last_before(tables["customer_terminals"], ["customer_key", "terminal_id"], queries, t)
    out["customer_new_terminal"] = (last_pair < midnight(day - config.new_terminal_days)).astype("float64")

    # Terminal risk over [D-delay-N, D-delay-1] (FDH's delayed window) and the undelayed recent
    # windows; a fraud only counts if its label was known before t.
    term = _Prefix(tables["terminal_activity"], ["terminal_id"], ["n"])
    windows = [(n, config.terminal_delay_days, "") for n in config.terminal_windows]
    windows += [(n, 0, "recent_") for n in config.terminal_recent_windows]
    for n, delay, tag in windows:
        end = midnight(day - delay)
        tx_count = term.before(queries, end)["n"] - term.before(queries, end - n * US_PER_DAY)["n"]
        fraud_count = _known_frauds(tables["terminal_frauds"], queries, day, t, n, delay)
        out[f"terminal_tx_count_{tag}{n}d"] = tx_count.astype("float64")
        out[f"terminal_fraud_count_{tag}{n}d"] = fraud_count.astype("float64")
        out[f"terminal_fraud_rate_{tag}{n}d"] = np.divide(fraud_count, tx_count, out=np.zeros(len(t)), where=tx_count > 0)
    # Age of the terminal's known fraud history (days D-age .. D-1); "none" reads as age + 1.
    age = config.terminal_fraud_age_days
    for name, how in (("last", "max"), ("first", "min")):
        fraud_day = _known_frauds(tables["terminal_frauds"], queries, day, t, age, 0, how=how)
        out[f"terminal_days_since_{name}_fraud"] = np.where(fraud_day >= 0, day - fraud_day, age + 1).astype("float64")

    frame = pd.DataFrame(out)[config.feature_columns()]
    frame.insert(0, "transaction_id", queries["transaction_id"])
    return frame


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def compute_batch_features(
    transactions: pd.DataFrame, labels: pd.DataFrame | None = None, config: FeatureConfig = DEFAULT_CONFIG
) -> pd.DataFrame:
    """Features for every transaction, with the given transactions as the only history.

    ``labels`` (``transaction_id``, ``label_known_at``, optional ``is_fraud``) defaults to the
    transactions' own ``is_fraud``/``label_known_at`` columns (the sandbox zone carries both).
    Returns ``transaction_id`` + ``config.feature_columns()`` in the input's row order and index.
    """
    events = _events(transactions)
    frauds = _fraud_labels(labels, transactions)
    frame = _compute(_State.from_events(events, frauds), events, config)
    frame.index = transactions.index
    return frame


@dataclass(frozen=True)
class FeatureSnapshot:
    """Online feature state as of ``as_of``: everything strictly before it, compacted.

    Activity is kept as per-entity daily buckets (the open day too: every bucket is before any
    ``t >= as_of`` and window edges are midnights), so a transaction at ``t >= as_of`` gets exactly
    the batch value; customer/terminal pairs keep their exact last-seen time. The customer tables are
    what the ``customer_features`` asset publishes, the terminal tables ``terminal_features``.
    """

    as_of: pd.Timestamp
    customer_activity: pd.DataFrame
    customer_terminals: pd.DataFrame
    terminal_activity: pd.DataFrame
    terminal_frauds: pd.DataFrame
    config: FeatureConfig = field(default=DEFAULT_CONFIG)

    TABLES = ("customer_activity", "customer_terminals", "terminal_activity", "terminal_frauds")
    CUSTOMER_TABLES = ("customer_activity", "customer_terminals")
    TERMINAL_TABLES = ("terminal_activity", "terminal_frauds")

    # Building and advancing ------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        transactions: pd.DataFrame,
        labels: pd.DataFrame | None = None,
        as_of: pd.Timestamp | str | None = None,
        config: FeatureConfig = DEFAULT_CONFIG,
    ) -> "FeatureSnapshot":
        """Snapshot of ``transactions``/``labels`` before ``as_of`` (default: just after the last event)."""
        events = _events(transactions)
        frauds = _fraud_labels(labels, transactions)
        as_of_us = _as_of_us(as_of, events)
        empty = cls._empty(config, as_of_us)
        return empty._advanced(_State.from_events(events, frauds), as_of_us)

    def update(
        self, transactions: pd.DataFrame, labels: pd.DataFrame | None = None, as_of: pd.Timestamp | str | None = None
    ) -> "FeatureSnapshot":
        """Roll forward with events at/after ``self.as_of`` (and labels known since it).

        ``labels`` must carry ``terminal_id`` and ``event_time`` unless the labelled transactions are
        in ``transactions``.
        """
        events = _events(transactions)
        frauds = self._new_labels(labels, transactions)
        as_of_us = _as_of_us(as_of, events, floor=self.as_of_us)
        return self._advanced(_State.from_events(events, frauds), as_of_us)

    def _new_labels(self, labels: pd.DataFrame | None, transactions: pd.DataFrame) -> pd.DataFrame:
        """Fraud labels known at/after ``as_of``; earlier ones are already in the state (no double count)."""
        frauds = _fraud_labels(labels, transactions) if labels is not None else _fraud_labels(None, None)
        return frauds[frauds["time"] >= self.as_of_us]

    @property
    def as_of_us(self) -> int:
        return int((self.as_of - _EPOCH) // pd.Timedelta(microseconds=1))

    def _state(self) -> _State:
        return _State(*(getattr(self, t) for t in self.TABLES))

    @classmethod
    def _empty(cls, config: FeatureConfig, as_of_us: int) -> "FeatureSnapshot":
        empty = _State.from_events(_events(pd.DataFrame(
            {"transaction_id": [], "customer_key": [], "terminal_id": [], "amount_eur": [],
             "event_time": pd.to_datetime([], utc=True)})), _fraud_labels(None, None))
        return cls(_from_us(as_of_us), *(getattr(empty, t) for t in cls.TABLES), config=config)

    def _advanced(self, new: _State, as_of_us: int) -> "FeatureSnapshot":
        """Fold ``new`` rows (all at/after ``self.as_of``) into per-entity daily buckets.

        Every row before ``as_of`` is bucketed by UTC day, the open day included: a query at
        ``t >= as_of`` sees all of them and window edges fall on midnights, so buckets give exactly
        the raw values while the state stays bounded by entities x days however many events a day
        brings. Within a day only the open day's buckets are regrouped; a new day regroups all.
        """
        cfg = self.config
        open_day = as_of_us // US_PER_DAY
        keep_from = (open_day - cfg.history_days()) * US_PER_DAY
        previous_open = (self.as_of_us // US_PER_DAY) * US_PER_DAY
        # Rows before the previous open day are final buckets; after a day change regroup everything
        # so each pair keeps a single "last seen" row.
        regroup_from = previous_open if open_day == self.as_of_us // US_PER_DAY else keep_from

        def fold(old: pd.DataFrame, added: pd.DataFrame, keys: list[str], values: list[str], how: str = "sum",
                 bucket: bool = True) -> pd.DataFrame:
            settled = old[(old["time"] < regroup_from) & (old["time"] >= keep_from)]
            rows = pd.concat([old[old["time"] >= regroup_from], added], ignore_index=True)
            rows = rows[(rows["time"] < as_of_us) & (rows["time"] >= keep_from)]
            if bucket:
                rows = rows.assign(time=(rows["time"] // US_PER_DAY) * US_PER_DAY)
            group_keys = keys + (["time"] if bucket else [])
            grouped = rows.groupby(group_keys, sort=True)[values].agg(how).reset_index()
            return pd.concat([settled, grouped[settled.columns]], ignore_index=True)

        frauds = fold(self.terminal_frauds, new.terminal_frauds, ["terminal_id", "tx_day"], ["n"])
        return replace(
            self,
            as_of=_from_us(as_of_us),
            customer_activity=fold(self.customer_activity, new.customer_activity, ["customer_key"], ["n", "cents"]),
            customer_terminals=fold(self.customer_terminals, new.customer_terminals, ["customer_key", "terminal_id"],
                                    ["time"], how="max", bucket=False),
            terminal_activity=fold(self.terminal_activity, new.terminal_activity, ["terminal_id"], ["n"]),
            terminal_frauds=frauds[frauds["tx_day"] >= open_day - cfg.history_days()].reset_index(drop=True),
        )

    # Scoring ---------------------------------------------------------------------------------
    def features(self, batch: pd.DataFrame, labels: pd.DataFrame | None = None) -> pd.DataFrame:
        """Features of a micro-batch (events at/after ``as_of``); see :func:`compute_online_features`."""
        events = _events(batch)
        if len(events) and events["time"].min() < self.as_of_us:
            raise ValueError(
                f"micro-batch has events before the snapshot time {self.as_of.isoformat()}; "
                "late events cannot be scored point-in-time against this snapshot"
            )
        frauds = self._new_labels(labels, batch)
        history = self._state().restricted_to(events["customer_key"].to_numpy(), events["terminal_id"].to_numpy())
        frame = _compute(history.concat(_State.from_events(events, frauds)), events, self.config)
        frame.index = batch.index
        return frame

    # Identity and persistence ----------------------------------------------------------------
    @property
    def version(self) -> str:
        """Content id: same history and config -> same version, on any machine."""
        digest = hashlib.sha256(json.dumps(self.manifest_core(), sort_keys=True).encode())
        for name in self.TABLES:
            table = getattr(self, name)
            cols = sorted(table.columns)
            ordered = table[cols].sort_values(cols).reset_index(drop=True)
            digest.update(pd.util.hash_pandas_object(ordered, index=False).to_numpy().tobytes())
        return f"{self.as_of.strftime('%Y%m%dT%H%M%S')}-{digest.hexdigest()[:12]}"

    def manifest_core(self) -> dict:
        return {"as_of": self.as_of.isoformat(), "config": asdict(self.config)}

    def manifest(self) -> dict:
        return {**self.manifest_core(), "version": self.version, "tables": list(self.TABLES),
                "row_counts": {t: int(len(getattr(self, t))) for t in self.TABLES}}

    def write(self, store: "LakeStore", prefix: str, tables: tuple[str, ...] | None = None) -> dict:
        """Write ``tables`` (default all) as Parquet plus ``_manifest.json`` under ``prefix``."""
        manifest = self.manifest()
        for name in tables or self.TABLES:
            store.write_parquet(f"{prefix}/{name}.parquet", pa.Table.from_pandas(getattr(self, name), preserve_index=False))
        store.write_json(f"{prefix}/_manifest.json", manifest)
        return manifest

    @classmethod
    def read(cls, store: "LakeStore", prefix: str) -> "FeatureSnapshot":
        manifest = store.read_json(f"{prefix}/_manifest.json")
        config = FeatureConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in manifest["config"].items()})
        tables = {
            name: pq.read_table(io.BytesIO(store.read_bytes(f"{prefix}/{name}.parquet"))).to_pandas()
            for name in cls.TABLES
        }
        snapshot = cls(pd.Timestamp(manifest["as_of"]), **tables, config=config)
        if snapshot.version != manifest["version"]:
            raise ValueError(f"snapshot at {prefix} does not match its manifest version {manifest['version']}")
        return snapshot


def compute_online_features(
    snapshot: FeatureSnapshot, batch: pd.DataFrame, labels: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Streaming path: snapshot + micro-batch -> the batch path's values for the same transactions.

    ``batch`` holds transaction events at/after ``snapshot.as_of`` (``transaction_id``,
    ``event_time``, ``customer_key``, ``terminal_id``, ``amount_eur``); ``labels`` are fraud labels
    that became known at/after ``snapshot.as_of`` (``transaction_id``, ``label_known_at``,
    ``terminal_id``, ``event_time``). Call ``snapshot.update(...)`` afterwards to roll the state.
    """
    return snapshot.features(batch, labels)


def _as_of_us(as_of: pd.Timestamp | str | None, events: pd.DataFrame, floor: int | None = None) -> int:
    if as_of is None:
        latest = int(events["time"].max()) + 1 if len(events) else (floor or 0)
        return max(latest, floor or latest)
    value = int((pd.Timestamp(as_of).tz_localize("UTC") if pd.Timestamp(as_of).tzinfo is None
                 else pd.Timestamp(as_of)).tz_convert("UTC").value // 1000)
    if floor is not None and value < floor:
        raise ValueError("a snapshot can only move forward in time")
    return value


def _from_us(value: int) -> pd.Timestamp:
    return _EPOCH + pd.Timedelta(microseconds=int(value))


# --------------------------------------------------------------------------------------------
# Online store path: history read back from a key-value store, exact events and buckets mixed
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntityHistory:
    """The history of some customers and terminals as an online store returns it.

    Same four tables as :class:`FeatureSnapshot`, but rows may mix exact events (their own time) and
    daily buckets (time = midnight): the core only ever asks "before t" with day-aligned window
    edges, so a closed day's bucket and its events give the same answer, and an open day's exact
    events keep lookups strictly point-in-time whatever order the events were applied in.
    ``terminal_frauds`` holds one row per known fraud (``time`` = label known at).
    """

    customer_activity: pd.DataFrame  # customer_key, time, n, cents
    customer_terminals: pd.DataFrame  # customer_key, terminal_id, time (last seen)
    terminal_activity: pd.DataFrame  # terminal_id, time, n
    terminal_frauds: pd.DataFrame  # terminal_id, tx_day, time (label known), n

    @classmethod
    def from_rows(cls, customer_activity: list[tuple], customer_terminals: list[tuple], terminal_activity: list[tuple],
                  terminal_frauds: list[tuple]) -> "EntityHistory":
        """Build from plain tuples (the store's decoded fields) in the column order above."""

        def frame(rows: list[tuple], columns: list[str], ints: list[str]) -> pd.DataFrame:
            values = list(zip(*rows)) if rows else [()] * len(columns)
            return pd.DataFrame({c: np.asarray(v, dtype="int64" if c in ints else object) for c, v in zip(columns, values)})

        return cls(
            frame(customer_activity, ["customer_key", "time", "n", "cents"], ["time", "n", "cents"]),
            frame(customer_terminals, ["customer_key", "terminal_id", "time"], ["time"]),
            frame(terminal_activity, ["terminal_id", "time", "n"], ["time", "n"]),
            frame(terminal_frauds, ["terminal_id", "tx_day", "time", "n"], ["tx_day", "time", "n"]),
        )

    @classmethod
    def of_snapshot(cls, snapshot: FeatureSnapshot) -> "EntityHistory":
        return cls(*(getattr(snapshot, t) for t in FeatureSnapshot.TABLES))


def features_on_history(history: EntityHistory, transactions: pd.DataFrame, in_history: np.ndarray | None = None,
                        config: FeatureConfig = DEFAULT_CONFIG) -> pd.DataFrame:
    """Features of ``transactions`` over ``history`` plus the earlier ones among ``transactions``.

    ``in_history`` marks transactions the history already contains (applied to the store before
    this call), which must not be counted twice. Equals :func:`compute_batch_features` on the raw
    events behind ``history`` plus ``transactions`` (the online store's parity contract).
    """
    events = _events(transactions)
    new = events if in_history is None else events[~np.asarray(in_history, dtype=bool)]
    state = _State(*(getattr(history, t) for t in FeatureSnapshot.TABLES))
    frame = _compute(state.concat(_State.from_events(new, _fraud_labels(None, None))), events, config)
    frame.index = transactions.index
    return frame


def event_rows(transactions: pd.DataFrame) -> pd.DataFrame:
    """Transactions normalised as the core sees them: ids as str, ``time``/``day`` in int64 us/days,
    ``cents`` = amount in integer cents (what an online store keeps)."""
    return _events(transactions)


def timestamps_us(values: pd.Series) -> np.ndarray:
    """UTC timestamps -> int64 microseconds since the epoch (the core's time unit)."""
    return _to_us(values)


def features_of_one(customer_activity: list[tuple], customer_terminals: list[tuple], terminal_activity: list[tuple],
                    terminal_frauds: list[tuple], time_us: int, amount_eur: float, terminal_id: str,
                    config: FeatureConfig = DEFAULT_CONFIG) -> list[float]:
    """``config.feature_columns()`` of ONE transaction at ``time_us`` over one customer's and one
    terminal's history rows, in plain Python (the decision API's per-request path).

    Rows are :meth:`EntityHistory.from_rows` tuples of this customer and this terminal only (their
    first element, the entity key, is not looked at). Same rule
    as :func:`_compute` ("rows with time < t"), same integer arithmetic and the same float
    operations in the same order, so the values are identical: pandas costs milliseconds for one
    row, this costs microseconds. ``test_features_of_one_equals_the_core`` holds them together.
    """
    t, day = time_us, time_us // US_PER_DAY
    midnight = lambda d: d * US_PER_DAY  # noqa: E731 - local shorthand

    def sums_before(at: int) -> tuple[int, int]:
        n = cents = 0
        for _, row_time, row_n, row_cents in customer_activity:
            if row_time < at:
                n += row_n
                cents += row_cents
        return n, cents

    def spend(since: int, until: tuple[int, int]) -> tuple[int, float]:
        start = sums_before(since)
        count, cents = until[0] - start[0], until[1] - start[1]
        return count, (cents / 100.0) / count if count > 0 else 0.0

    def ratio(numerator: float, denominator: float) -> float:
        return numerator / denominator if denominator > 0 else 1.0

    hour = (t // US_PER_HOUR) % 24
    out = [float(amount_eur), float(hour), 1.0 if hour >= 22 or hour < 6 else 0.0, 1.0 if (day + 3) % 7 >= 5 else 0.0]
    upto = sums_before(t)
    means: dict[int, float] = {}
    for n in config.customer_windows:
        count, means[n] = spend(midnight(day - n), upto)
        out += [float(count), means[n]]
    out += [ratio(out[0], means[n]) for n in config.amount_ratio_windows]
    recent, oldest = config.customer_baseline_days
    _, baseline = spend(midnight(day - oldest), sums_before(midnight(day - recent)))
    out.append(ratio(out[0], baseline))
    out += [ratio(means[n], baseline) for n in config.baseline_compared_windows()]

    cap_us = config.gap_cap_days * US_PER_DAY
    last_any = max((row_time for _, _, row_time in customer_terminals if row_time < t), default=-1)
    out.append((min(t - last_any, cap_us) if last_any >= 0 else cap_us) / 1e6)
    last_pair = max((row_time for _, term, row_time in customer_terminals if term == terminal_id and row_time < t), default=-1)
    out.append(1.0 if last_pair < midnight(day - config.new_terminal_days) else 0.0)

    def terminal_before(at: int) -> int:
        return sum(row_n for _, row_time, row_n in terminal_activity if row_time < at)

    def known_frauds(first_day: int, last_day: int) -> list[tuple[int, int]]:
        return [(tx_day, n) for _, tx_day, known, n in terminal_frauds if first_day <= tx_day <= last_day and known < t]

    windows = [(n, config.terminal_delay_days) for n in config.terminal_windows]
    windows += [(n, 0) for n in config.terminal_recent_windows]
    for n, delay in windows:
        end = midnight(day - delay)
        tx_count = terminal_before(end) - terminal_before(end - n * US_PER_DAY)
        fraud_count = sum(k for _, k in known_frauds(day - delay - n, day - delay - 1))
        out += [float(tx_count), float(fraud_count), fraud_count / tx_count if tx_count > 0 else 0.0]
    age = config.terminal_fraud_age_days
    fraud_days = [tx_day for tx_day, _ in known_frauds(day - age, day - 1)]
    out += [float(day - max(fraud_days)) if fraud_days else float(age + 1),
            float(day - min(fraud_days)) if fraud_days else float(age + 1)]
    return out
