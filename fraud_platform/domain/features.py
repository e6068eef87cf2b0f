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
events, the online path passes a :class:`FeatureSnapshot` (daily buckets for closed days + raw events
of the open day) plus the micro-batch. Amounts are summed in integer cents, so bucketed and raw sums
are bit-identical and the two paths give exactly the same values. No Dagster or Spark in here: the
streaming scorer imports this module as is.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

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
    terminal_windows: tuple[int, ...] = (1, 7, 30)
    terminal_delay_days: int = 7
    # Undelayed terminal windows (days D-N .. D-1): labels known before t already count, so a
    # freshly compromised terminal shows up before FDH's delayed window reaches it.
    terminal_recent_windows: tuple[int, ...] = (1, 7)
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
        cols += ["customer_seconds_since_prev", "customer_new_terminal"]
        for n in self.terminal_windows:
            cols += [f"terminal_tx_count_{n}d", f"terminal_fraud_count_{n}d", f"terminal_fraud_rate_{n}d"]
        for n in self.terminal_recent_windows:
            cols += [f"terminal_tx_count_recent_{n}d", f"terminal_fraud_count_recent_{n}d",
                     f"terminal_fraud_rate_recent_{n}d"]
        return cols

    def history_days(self) -> int:
        """How many closed days of history any feature can reach back."""
        return max(
            max(self.customer_windows),
            self.terminal_delay_days + max(self.terminal_windows),
            max(self.terminal_recent_windows, default=0),
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
    ts = pd.to_datetime(values, utc=True)
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
    dropped if the column exists); ``terminal_id``/``event_time`` are joined from ``transactions``
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


# --------------------------------------------------------------------------------------------
# The core: prefix sums per entity, looked up with "time < at" semantics
# --------------------------------------------------------------------------------------------


class _Prefix:
    """Cumulative sums of ``values`` per key over time; ``before(keys, at)`` = sum over rows < at."""

    def __init__(self, rows: pd.DataFrame, keys: list[str], values: list[str]) -> None:
        self.keys, self.values = keys, values
        agg = rows.groupby(keys + ["time"], sort=True, observed=True)[values].sum().reset_index()
        agg[values] = agg.groupby(keys, sort=False, observed=True)[values].cumsum()
        self.table = agg.sort_values("time", kind="stable").reset_index(drop=True)

    def before(self, query: pd.DataFrame, at: np.ndarray) -> pd.DataFrame:
        left = query[self.keys].copy()
        left["_at"] = np.asarray(at, dtype="int64")
        left["_pos"] = np.arange(len(left))
        if self.table.empty or left.empty:
            return pd.DataFrame(0, index=range(len(left)), columns=self.values, dtype="int64")
        left = left.sort_values("_at", kind="stable")
        merged = pd.merge_asof(
            left, self.table, left_on="_at", right_on="time", by=self.keys,
            allow_exact_matches=False, direction="backward",
        )
        merged = merged.sort_values("_pos")
        return merged[self.values].fillna(0).astype("int64").reset_index(drop=True)


def _last_before(rows: pd.DataFrame, keys: list[str], query: pd.DataFrame, at: np.ndarray) -> np.ndarray:
    """Latest row time < at per key (int64 us), -1 when there is none."""
    left = query[keys].copy()
    left["_at"] = np.asarray(at, dtype="int64")
    left["_pos"] = np.arange(len(left))
    if rows.empty or left.empty:
        return np.full(len(left), -1, dtype="int64")
    right = rows[keys + ["time"]].drop_duplicates().sort_values("time", kind="stable")
    right["last"] = right["time"]
    merged = pd.merge_asof(
        left.sort_values("_at", kind="stable"), right, left_on="_at", right_on="time", by=keys,
        allow_exact_matches=False, direction="backward",
    ).sort_values("_pos")
    return merged["last"].fillna(-1).astype("int64").to_numpy()


def _known_frauds(frauds: pd.DataFrame, queries: pd.DataFrame, day: np.ndarray, t: np.ndarray, n: int,
                  delay: int) -> np.ndarray:
    """Per query: frauds at its terminal with transaction day in [D-delay-n, D-delay-1] and label known < t."""
    counts = np.zeros(len(t), dtype="int64")
    for d in np.unique(day):
        rows = frauds[(frauds["tx_day"] >= d - delay - n) & (frauds["tx_day"] <= d - delay - 1)]
        if rows.empty:
            continue
        mask = day == d
        prefix = _Prefix(rows, ["terminal_id"], ["n"])
        counts[mask] = prefix.before(queries.loc[mask].reset_index(drop=True), t[mask])["n"].to_numpy()
    return counts


def _compute(state: _State, queries: pd.DataFrame, config: FeatureConfig) -> pd.DataFrame:
    """Features for ``queries`` (normalised events) given history ``state`` (may include them)."""
    t = queries["time"].to_numpy()
    day = queries["day"].to_numpy()
    midnight = lambda d: d * US_PER_DAY  # noqa: E731 - local shorthand
    out: dict[str, np.ndarray] = {"amount_eur": queries["amount_eur"].to_numpy(dtype="float64")}

    hour = (t // US_PER_HOUR) % 24
    weekday = (day + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    out["hour"] = hour.astype("float64")
    out["is_night"] = ((hour >= 22) | (hour < 6)).astype("float64")
    out["is_weekend"] = (weekday >= 5).astype("float64")

    # Customer spending: cum(t) - cum(00:00 of D-N).
    cust = _Prefix(state.customer_activity, ["customer_key"], ["n", "cents"])
    upto = cust.before(queries, t)
    means: dict[int, np.ndarray] = {}
    for n in config.customer_windows:
        since = cust.before(queries, midnight(day - n))
        count = (upto["n"] - since["n"]).to_numpy()
        cents = (upto["cents"] - since["cents"]).to_numpy()
        mean = np.divide(cents / 100.0, count, out=np.zeros(len(count)), where=count > 0)
        out[f"customer_tx_count_{n}d"] = count.astype("float64")
        out[f"customer_mean_amount_{n}d"] = mean
        means[n] = mean
    for n in config.amount_ratio_windows:
        out[f"customer_amount_to_mean_{n}d"] = np.divide(out["amount_eur"], means[n], out=np.ones(len(t)),
                                                         where=means[n] > 0)

    # Behaviour: gap since the customer's previous transaction; terminal unseen in the window.
    cap_us = config.gap_cap_days * US_PER_DAY
    last_any = _last_before(state.customer_terminals, ["customer_key"], queries, t)
    gap = np.where(last_any >= 0, np.minimum(t - last_any, cap_us), cap_us)
    out["customer_seconds_since_prev"] = gap / 1e6
    last_pair = _last_before(state.customer_terminals, ["customer_key", "terminal_id"], queries, t)
    out["customer_new_terminal"] = (last_pair < midnight(day - config.new_terminal_days)).astype("float64")

    # Terminal risk over [D-delay-N, D-delay-1] (FDH's delayed window) and the undelayed recent
    # windows; a fraud only counts if its label was known before t.
    term = _Prefix(state.terminal_activity, ["terminal_id"], ["n"])
    windows = [(n, config.terminal_delay_days, "") for n in config.terminal_windows]
    windows += [(n, 0, "recent_") for n in config.terminal_recent_windows]
    for n, delay, tag in windows:
        end = midnight(day - delay)
        tx_count = term.before(queries, end)["n"].to_numpy() - term.before(queries, end - n * US_PER_DAY)["n"].to_numpy()
        fraud_count = _known_frauds(state.terminal_frauds, queries, day, t, n, delay)
        out[f"terminal_tx_count_{tag}{n}d"] = tx_count.astype("float64")
        out[f"terminal_fraud_count_{tag}{n}d"] = fraud_count.astype("float64")
        out[f"terminal_fraud_rate_{tag}{n}d"] = np.divide(fraud_count, tx_count, out=np.zeros(len(t)), where=tx_count > 0)

    frame = pd.DataFrame(out)[config.feature_columns()]
    frame.insert(0, "transaction_id", queries["transaction_id"].to_numpy())
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

    Closed days (before ``as_of``'s UTC day) are per-entity daily buckets; the open day keeps raw
    events, so a transaction at ``t >= as_of`` gets exactly the batch value. The customer tables are
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
        merged = self._state().concat(new)
        cfg = self.config
        open_day = as_of_us // US_PER_DAY
        keep_from = (open_day - cfg.history_days()) * US_PER_DAY

        def compact(rows: pd.DataFrame, keys: list[str], values: list[str]) -> pd.DataFrame:
            rows = rows[(rows["time"] < as_of_us) & (rows["time"] >= keep_from)]
            closed = rows["time"] < open_day * US_PER_DAY
            buckets = rows[closed].assign(time=(rows.loc[closed, "time"] // US_PER_DAY) * US_PER_DAY)
            buckets = buckets.groupby(keys + ["time"], sort=True)[values].sum().reset_index()
            raw = rows[~closed]
            return pd.concat([buckets, raw[keys + ["time"] + values]], ignore_index=True)

        frauds = merged.terminal_frauds
        frauds = frauds[frauds["tx_day"] >= open_day - cfg.history_days()]
        pairs = merged.customer_terminals
        pairs = pairs[(pairs["time"] < as_of_us) & (pairs["time"] >= keep_from)]
        return replace(
            self,
            as_of=_from_us(as_of_us),
            customer_activity=compact(merged.customer_activity, ["customer_key"], ["n", "cents"]),
            customer_terminals=pairs.groupby(["customer_key", "terminal_id"], sort=True)["time"].max().reset_index(),
            terminal_activity=compact(merged.terminal_activity, ["terminal_id"], ["n"]),
            terminal_frauds=compact(frauds, ["terminal_id", "tx_day"], ["n"]),
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
        state = self._state().concat(_State.from_events(events, frauds))
        frame = _compute(state, events, self.config)
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
