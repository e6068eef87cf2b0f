"""Point-in-time correctness and batch/online parity of the shared feature module."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraud_platform.domain.features import (
    FEATURE_COLUMNS,
    FeatureSnapshot,
    compute_batch_features,
    compute_online_features,
)
from fraud_platform.infra.lake import LocalLakeStore

T0 = pd.Timestamp("2026-03-02", tz="UTC")  # a Monday


def _tx(rows: list[tuple]) -> pd.DataFrame:
    """(id, time offset, customer, terminal, amount, is_fraud, label known offset or None)."""
    return pd.DataFrame(
        {
            "transaction_id": [r[0] for r in rows],
            "event_time": [T0 + pd.Timedelta(r[1]) for r in rows],
            "customer_key": [r[2] for r in rows],
            "terminal_id": [r[3] for r in rows],
            "amount_eur": [float(r[4]) for r in rows],
            "is_fraud": [r[5] for r in rows],
            "label_known_at": [T0 + pd.Timedelta(r[6]) if r[6] else pd.NaT for r in rows],
        }
    )


def test_terminal_fraud_counts_only_labels_known_before_the_transaction():
    frame = _tx([
        ("f1", "0D 10h", "c1", "T1", 100, 1, "8D 12h"),  # fraud whose label arrives on day 8 at 12:00
        ("a", "8D 11h", "c2", "T1", 20, 0, None),  # before the label: must not see it
        ("b", "8D 12h", "c3", "T1", 20, 0, None),  # exactly at known time: strictly before -> not yet
        ("c", "8D 13h", "c4", "T1", 20, 0, None),  # after: sees it
    ])
    feats = compute_batch_features(frame).set_index("transaction_id")
    # Terminal window N=1 with the 7-day delay covers day D-8 = day 0 for transactions on day 8.
    assert feats.loc["a", "terminal_tx_count_1d"] == 1
    assert feats.loc["a", "terminal_fraud_count_1d"] == 0
    assert feats.loc["b", "terminal_fraud_count_1d"] == 0
    assert feats.loc["c", "terminal_fraud_count_1d"] == 1
    assert feats.loc["c", "terminal_fraud_rate_1d"] == 1.0
    assert feats.loc["c", "terminal_fraud_count_30d"] == 1


def test_recent_terminal_window_uses_labels_as_soon_as_they_are_known():
    frame = _tx([
        ("f2", "5D 10h", "c1", "T2", 80, 1, "6D 10h"),  # label known one day later
        ("d", "6D 09h", "c2", "T2", 20, 0, None),
        ("e", "6D 11h", "c3", "T2", 20, 0, None),
    ])
    feats = compute_batch_features(frame).set_index("transaction_id")
    for tx in ("d", "e"):  # the undelayed 1-day window on day 6 is day 5
        assert feats.loc[tx, "terminal_tx_count_recent_1d"] == 1
        assert feats.loc[tx, "terminal_tx_count_1d"] == 0  # FDH's delayed window does not reach day 5
    assert feats.loc["d", "terminal_fraud_count_recent_1d"] == 0
    assert feats.loc["e", "terminal_fraud_count_recent_1d"] == 1
    assert feats.loc["e", "terminal_fraud_rate_recent_7d"] == 1.0


def test_analyst_verdicts_count_from_their_time_and_a_later_chargeback_counts_once():
    frame = _tx([
        ("v1", "5D 10h", "c1", "T3", 80, 1, None),  # confirmed by an analyst on day 5, chargeback on day 9
        ("v2", "5D 11h", "c2", "T3", 90, 0, None),  # judged legitimate, then a chargeback on day 8
        ("g", "6D 09h", "c3", "T3", 20, 0, None),
        ("h", "9D 12h", "c4", "T3", 20, 0, None),
    ]).drop(columns=["is_fraud", "label_known_at"])
    labels = pd.DataFrame({
        "transaction_id": ["v1", "v2", "v1", "v2"],
        "label_type": ["analyst_confirmed", "analyst_legitimate", "chargeback", "chargeback"],
        "is_fraud": [1, 0, 1, 1],
        "label_known_at": [T0 + pd.Timedelta(t) for t in ("5D 14h", "5D 15h", "9D 08h", "8D 10h")],
    })
    feats = compute_batch_features(frame, labels).set_index("transaction_id")
    assert feats.loc["g", "terminal_fraud_count_recent_1d"] == 1  # the verdict, the next morning
    assert feats.loc["h", "terminal_fraud_count_recent_7d"] == 2  # v1 once (not per label) + v2's chargeback
    snapshot = FeatureSnapshot.build(frame.iloc[:3], labels, as_of=T0 + pd.Timedelta("9D"))
    online = compute_online_features(snapshot, frame.iloc[3:], labels).set_index("transaction_id")
    assert online.loc["h", "terminal_fraud_count_recent_7d"] == 2


def test_later_labels_and_later_transactions_never_change_earlier_features(sandbox_frame):
    cut = pd.Timestamp("2026-01-20 15:00", tz="UTC")
    full = compute_batch_features(sandbox_frame)
    early = sandbox_frame["event_time"] < cut
    # Remove every later transaction and every label known at/after the cut.
    truncated = sandbox_frame[early].copy()
    late_label = truncated["label_known_at"] >= cut
    truncated.loc[late_label, "is_fraud"] = 0
    truncated.loc[late_label, "label_known_at"] = pd.NaT
    assert late_label.sum() > 0, "fixture must have labels arriving after the cut"
    partial = compute_batch_features(truncated)
    pd.testing.assert_frame_equal(full.loc[early, FEATURE_COLUMNS], partial[FEATURE_COLUMNS])


def test_customer_windows_gap_ties_and_new_terminal():
    frame = _tx([
        ("p1", "0D 10h", "c1", "T1", 100, 0, None),
        ("p2", "0D 12h", "c1", "T2", 200, 0, None),
        ("p3", "1D 09h", "c1", "T1", 50, 0, None),
        ("tie1", "1D 20h", "c1", "T3", 10, 0, None),
        ("tie2", "1D 20h", "c1", "T3", 30, 0, None),
    ])
    f = compute_batch_features(frame).set_index("transaction_id")
    assert f.loc["p1", "customer_tx_count_30d"] == 0 and f.loc["p1", "customer_new_terminal"] == 1
    assert f.loc["p1", "customer_seconds_since_prev"] == 30 * 86_400  # no history reads as the cap
    # p3 on day 1: the 1-day window starts at 00:00 of day 0 -> p1 and p2.
    assert f.loc["p3", "customer_tx_count_1d"] == 2
    assert f.loc["p3", "customer_mean_amount_1d"] == 150.0
    assert f.loc["p3", "customer_amount_to_mean_30d"] == pytest.approx(50 / 150)
    assert f.loc["p3", "customer_seconds_since_prev"] == 21 * 3600
    assert f.loc["p3", "customer_new_terminal"] == 0
    # Same-timestamp transactions do not see each other.
    assert f.loc["tie1", "customer_tx_count_1d"] == f.loc["tie2", "customer_tx_count_1d"] == 3
    assert f.loc["tie1", "customer_new_terminal"] == f.loc["tie2", "customer_new_terminal"] == 1
    assert f.loc["p1", "is_weekend"] == 0 and f.loc["p1", "hour"] == 10 and f.loc["p1", "is_night"] == 0


def test_online_path_matches_batch_exactly(sandbox_frame, tmp_path):
    """Snapshot mid-day, persisted to the lake and read back, then two micro-batches with the labels
    that arrive in between: identical values to the batch path, bit for bit."""
    frame = sandbox_frame
    cut1 = pd.Timestamp("2026-01-20 13:17:31", tz="UTC")
    cut2 = pd.Timestamp("2026-01-22 02:00:00", tz="UTC")
    fraud = frame[frame["is_fraud"] == 1]
    labels_cols = ["transaction_id", "label_known_at", "terminal_id", "event_time"]

    snapshot = FeatureSnapshot.build(frame[frame["event_time"] < cut1], as_of=cut1)
    store = LocalLakeStore(tmp_path / "lake")
    snapshot.write(store, "features/online/test")
    snapshot = FeatureSnapshot.read(store, "features/online/test")
    assert snapshot.as_of == cut1

    batch1 = frame[(frame["event_time"] >= cut1) & (frame["event_time"] < cut2)]
    labels1 = fraud.loc[(fraud["label_known_at"] >= cut1) & (fraud["label_known_at"] < cut2), labels_cols]
    online1 = compute_online_features(snapshot, batch1, labels1)
    snapshot = snapshot.update(batch1, labels1, as_of=cut2)
    batch2 = frame[frame["event_time"] >= cut2]
    labels2 = fraud.loc[fraud["label_known_at"] >= cut2, labels_cols]
    online2 = compute_online_features(snapshot, batch2, labels2)

    online = pd.concat([online1, online2])
    batch = compute_batch_features(frame).loc[online.index]
    assert len(online) > 5000 and online["terminal_fraud_count_7d"].sum() > 0
    assert online["transaction_id"].tolist() == batch["transaction_id"].tolist()
    np.testing.assert_array_equal(online[FEATURE_COLUMNS].to_numpy(), batch[FEATURE_COLUMNS].to_numpy())


def test_rolling_in_many_micro_batches_stays_exact_and_bounded(sandbox_frame):
    """The streaming pattern: features of each small batch, then roll the snapshot with it (and the
    labels known meanwhile), across two midnights. Values equal the batch path, and the state holds
    one bucket per entity and day however many batches a day brings (cost does not grow in a day)."""
    frame = sandbox_frame
    start, end = pd.Timestamp("2026-01-20 13:17:31", tz="UTC"), pd.Timestamp("2026-01-22 02:00:00", tz="UTC")
    fraud = frame[frame["is_fraud"] == 1]
    labels_cols = ["transaction_id", "label_known_at", "terminal_id", "event_time"]
    snapshot = FeatureSnapshot.build(frame[frame["event_time"] < start], as_of=start)
    cuts = pd.date_range(start, end, periods=25)
    online = []
    for low, high in zip(cuts[:-1], cuts[1:]):
        batch = frame[(frame["event_time"] >= low) & (frame["event_time"] < high)]
        labels = fraud.loc[(fraud["label_known_at"] >= low) & (fraud["label_known_at"] < high), labels_cols]
        online.append(compute_online_features(snapshot, batch, labels))
        snapshot = snapshot.update(batch, labels, as_of=high)
        for table, keys in (("customer_activity", ["customer_key", "time"]), ("terminal_activity", ["terminal_id", "time"])):
            rows = getattr(snapshot, table)
            assert not rows.duplicated(keys).any(), f"{table} keeps more than one bucket per entity and day"
            assert (rows["time"] % 86_400_000_000 == 0).all(), f"{table} keeps raw event times"
        assert snapshot.customer_terminals.groupby(["customer_key", "terminal_id"]).size().max() <= 2

    online = pd.concat(online)
    batch = compute_batch_features(frame).loc[online.index]
    assert len(online) > 1000 and online["terminal_fraud_count_recent_1d"].sum() > 0
    np.testing.assert_array_equal(online[FEATURE_COLUMNS].to_numpy(), batch[FEATURE_COLUMNS].to_numpy())


@pytest.mark.parametrize("low, high", [(1, 4), (-5, 5), (0, 2**61)], ids=["counts", "negative", "too-wide-to-lift"])
def test_as_of_sums_and_last_times_match_brute_force(low, high):
    """The numpy as-of core (sum/max/min, strictly-before, ties, unknown keys, two-column keys) vs a
    loop; values below zero and a range too wide for the lifted running max (its groupby path)."""
    from fraud_platform.domain.features import _last_before, _Prefix

    rng = np.random.default_rng(7)
    values = rng.choice([low, high], 400) if high > 2**40 else rng.integers(low, high, 400)
    rows = pd.DataFrame({"a": rng.integers(0, 6, 400), "b": rng.integers(0, 3, 400),
                         "time": rng.integers(0, 50, 400), "n": values})
    queries = pd.DataFrame({"a": rng.integers(0, 8, 300), "b": rng.integers(0, 3, 300)})
    at = rng.integers(0, 55, 300)
    sums = _Prefix(rows, ["a"], ["n"]).before(queries, at)["n"]
    highs = _Prefix(rows, ["a"], ["n"], how="max", fill=-1).before(queries, at)["n"]
    lows = _Prefix(rows, ["a"], ["n"], how="min", fill=-1).before(queries, at)["n"]
    last = _last_before(rows, ["a", "b"], queries, at)
    for i, (a, b, t) in enumerate(zip(queries["a"], queries["b"], at)):
        before = rows.loc[(rows["a"] == a) & (rows["time"] < t), "n"]
        assert (sums[i], highs[i], lows[i]) == (before.sum(), before.max() if len(before) else -1,
                                                 before.min() if len(before) else -1)
        earlier = rows.loc[(rows["a"] == a) & (rows["b"] == b) & (rows["time"] < t), "time"]
        assert last[i] == (earlier.max() if len(earlier) else -1)


def test_snapshot_rejects_events_before_its_time(sandbox_frame):
    cut = pd.Timestamp("2026-01-10", tz="UTC")
    snapshot = FeatureSnapshot.build(sandbox_frame[sandbox_frame["event_time"] < cut], as_of=cut)
    late = sandbox_frame[sandbox_frame["event_time"] < cut].tail(3)
    with pytest.raises(ValueError, match="before the snapshot time"):
        compute_online_features(snapshot, late)


def test_snapshot_version_is_content_addressed(sandbox_frame):
    cut = pd.Timestamp("2026-01-15", tz="UTC")
    history = sandbox_frame[sandbox_frame["event_time"] < cut]
    a = FeatureSnapshot.build(history, as_of=cut)
    b = FeatureSnapshot.build(history.sample(frac=1.0, random_state=1), as_of=cut)
    c = FeatureSnapshot.build(history.iloc[1:], as_of=cut)
    assert a.version == b.version
    assert a.version != c.version
    # Closed days are compacted to one bucket per customer and day.
    closed = a.customer_activity[a.customer_activity["time"] % 86_400_000_000 == 0]
    assert not closed.duplicated(["customer_key", "time"]).any()
    assert len(a.customer_activity) < len(history)
