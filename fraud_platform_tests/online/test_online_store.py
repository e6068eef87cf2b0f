"""The online feature store against a real Redis (the embedded redis-server): lookups equal the batch
features over the same history and label knowledge, whatever order the events were applied in;
applying is idempotent; duplicate claims expire; an unreachable store is one clear error."""

from __future__ import annotations

import pickle
import time
from datetime import date

import numpy as np
import pandas as pd
import pytest

from fraud_platform.domain.features import FEATURE_COLUMNS, FeatureSnapshot, compute_batch_features
from fraud_platform.domain.simulator import SimulationConfig, TransactionSimulator
from fraud_platform.infra.online_store import OnlineFeatureStore, OnlineStoreUnavailable
from fraud_platform.ml.datasets import simulated_sandbox_frame

EVENT_COLUMNS = ["transaction_id", "event_time", "customer_key", "terminal_id", "amount_eur"]


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    """40 small simulated days (more than the longest window) with final fraud labels."""
    simulator = TransactionSimulator(SimulationConfig(
        start=date(2026, 1, 1), days=40, n_customers=150, n_terminals=300, seed=7, fraud_rate=0.05, label_delay_days=4,
    ))
    return simulated_sandbox_frame(simulator)


def _labels_known_before(frame: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    known = frame[frame["label_known_at"].notna() & (frame["label_known_at"] < cutoff)]
    return known[["transaction_id", "label_known_at"]].assign(is_fraud=1)


def _reference(frame: pd.DataFrame, labels: pd.DataFrame, rows: pd.Index) -> pd.DataFrame:
    """compute_batch_features over everything in ``frame`` with exactly ``labels``, for ``rows``."""
    return compute_batch_features(frame[EVENT_COLUMNS], labels=labels).loc[rows]


def _assert_same(online: pd.DataFrame, offline: pd.DataFrame) -> None:
    assert list(online["transaction_id"]) == list(offline["transaction_id"])
    np.testing.assert_allclose(online[FEATURE_COLUMNS].to_numpy(), offline[FEATURE_COLUMNS].to_numpy(), rtol=0, atol=1e-9)


def test_features_equal_batch_features_whatever_the_apply_order(online_store: OnlineFeatureStore, history: pd.DataFrame):
    cutoff = history["event_time"].min().normalize() + pd.Timedelta(days=36, hours=13)
    past = history[history["event_time"] < cutoff]
    # Applied in shuffled chunks (partitions interleave; labels before some of their transactions).
    shuffled = past.sample(frac=1.0, random_state=3)
    labels = _labels_known_before(history, cutoff)
    online_store.apply_labels(labels.iloc[: len(labels) // 2])
    for chunk in np.array_split(shuffled.index.to_numpy(), 7):
        online_store.apply_transactions(shuffled.loc[chunk, EVENT_COLUMNS])
    online_store.apply_labels(labels.iloc[len(labels) // 2:])

    # Later transactions (two hours, and a few applied already, as the pipeline may have done).
    later = history[(history["event_time"] >= cutoff) & (history["event_time"] < cutoff + pd.Timedelta(hours=30))]
    assert len(later) > 50
    online_store.apply_transactions(later.iloc[:10][EVENT_COLUMNS])
    online = online_store.features(later[EVENT_COLUMNS])
    offline = _reference(pd.concat([past, later]), labels, later.index)
    assert online.index.equals(later.index)
    _assert_same(online, offline)
    # The terminal fraud features are not trivially zero: labels did reach them.
    assert online["terminal_fraud_count_recent_28d"].sum() > 0


def test_features_of_earlier_days_use_only_history_before_each_event(online_store: OnlineFeatureStore, history: pd.DataFrame):
    """Everything applied, then an open day's events asked again: only history before each counts."""
    start = history["event_time"].min().normalize()
    window = history[history["event_time"] < start + pd.Timedelta(days=34)]
    labels = _labels_known_before(history, start + pd.Timedelta(days=34))
    online_store.apply_transactions(window[EVENT_COLUMNS])
    online_store.apply_labels(labels)
    last_day = window[window["event_time"] >= start + pd.Timedelta(days=33)]
    online = online_store.features(last_day[EVENT_COLUMNS])
    # The batch reference with the labels known before each event is exactly what the core computes.
    offline = _reference(window, labels, last_day.index)
    _assert_same(online, offline)


def test_reapplying_leaves_the_store_identical(online_store: OnlineFeatureStore, history: pd.DataFrame):
    part = history.iloc[:800]
    labels = _labels_known_before(history, part["event_time"].max() + pd.Timedelta(days=10))
    online_store.apply_transactions(part[EVENT_COLUMNS])
    online_store.apply_labels(labels)
    before = _dump(online_store)
    version = online_store.state_version()
    assert online_store.apply_transactions(part[EVENT_COLUMNS])["applied"] == 0
    online_store.apply_labels(labels)
    assert _dump(online_store) == before
    assert online_store.state_version() == version
    # The API's one-round-trip read (a Lua script joining each hash into one string) returns what
    # the per-entity reads do, and the same state version; an unknown entity reads as empty.
    pairs = list(zip(part["customer_key"].head(5), part["terminal_id"].head(5))) + [("no-such-customer", "no-such-terminal")]
    online_store.client().script_flush()  # as after a Redis restart: NOSCRIPT, loaded, run again
    many_version, many, extra = online_store.entity_rows_many(pairs, lambda pipe: pipe.ping())
    assert many_version == version and extra == [True]
    assert many == [online_store.entity_rows(c, t) for c, t in pairs]
    assert many[-1] == ([], [], [], []) and all(rows[0] and rows[2] for rows in many[:-1])


def _dump(store: OnlineFeatureStore) -> dict:
    client = store.client()
    out = {}
    for key in client.scan_iter(match=f"{store.prefix}*"):
        kind = client.type(key)
        out[key] = client.hgetall(key) if kind == b"hash" else client.get(key)
    return out


def test_materialised_snapshot_then_stream_equals_batch(online_store: OnlineFeatureStore, history: pd.DataFrame):
    start = history["event_time"].min().normalize()
    as_of = start + pd.Timedelta(days=30)
    before = history[history["event_time"] < as_of]
    snapshot = FeatureSnapshot.build(before, as_of=as_of)
    metadata = online_store.materialise(snapshot, transactions=before)
    assert metadata["customers_written"] > 0 and metadata["terminals_written"] > 0 and metadata["bytes_added"] > 0
    cutoff = as_of + pd.Timedelta(days=4, hours=8)
    stream = history[(history["event_time"] >= as_of) & (history["event_time"] < cutoff)]
    online_store.apply_transactions(stream[EVENT_COLUMNS])
    labels = _labels_known_before(history, cutoff)
    online_store.apply_labels(labels)
    later = history[(history["event_time"] >= cutoff) & (history["event_time"] < cutoff + pd.Timedelta(hours=20))]
    reference = _reference(history[history["event_time"] < cutoff + pd.Timedelta(hours=20)], labels, later.index)
    _assert_same(online_store.features(later[EVENT_COLUMNS]), reference)

    # A newer snapshot (the weekly retrain) under the running stream replaces the state before its
    # as-of without counting anything twice.
    newer_as_of = as_of + pd.Timedelta(days=2)
    newer = FeatureSnapshot.build(history[history["event_time"] < newer_as_of], labels=labels, as_of=newer_as_of)
    online_store.materialise(newer)
    _assert_same(online_store.features(later[EVENT_COLUMNS]), reference)


def test_claims_detect_duplicates_and_old_ids_expire(online_store: OnlineFeatureStore):
    online_store.dedupe_ttl_seconds = 4
    first = online_store.claim_ids(["tx-a", "tx-b", "tx-a"], token="batch-1")
    assert first.tolist() == [True, True, False]
    # The same batch replayed is not its own duplicate; another batch is.
    assert online_store.claim_ids(["tx-a", "tx-b"], token="batch-1").tolist() == [True, True]
    assert online_store.claim_ids(["tx-b"], token="batch-2").tolist() == [False]
    time.sleep(2.0)
    assert online_store.claim_ids(["tx-c"], token="batch-3").tolist() == [True]
    time.sleep(2.2)  # tx-a/tx-b are older than the TTL, tx-c is not
    assert online_store.claim_ids(["tx-a", "tx-b", "tx-c"], token="batch-4").tolist() == [True, True, False]
    # Memory is bounded: only live claims hold keys.
    assert online_store.client().ttl(online_store.key("d", "tx-c")) <= 4


def test_store_is_picklable_and_reconnects(online_store: OnlineFeatureStore):
    online_store.ping()
    clone = pickle.loads(pickle.dumps(online_store))
    assert clone._client is None
    clone.ping()
    clone.close()


def test_unreachable_store_is_one_line_error():
    from fraud_platform.infra.broker import free_port

    store = OnlineFeatureStore.from_url(f"redis://:secret@127.0.0.1:{free_port()}/0", socket_timeout_seconds=0.5)
    with pytest.raises(OnlineStoreUnavailable) as error:
        store.ping()
    message = str(error.value)
    assert "\n" not in message and "secret" not in message and "127.0.0.1" in message
    assert "secret" not in repr(store) and "secret" not in repr(OnlineFeatureStore.from_url("redis://h:6379/0", password="secret"))


def test_state_is_bounded_by_the_window_not_the_stream(online_store: OnlineFeatureStore, history: pd.DataFrame):
    """After 40 days in daily batches, entity hashes hold only open-day events and in-window buckets."""
    days = history["event_time"].dt.floor("D")
    for _, batch in history.groupby(days):
        online_store.apply_transactions(batch[EVENT_COLUMNS])
    client = online_store.client()
    last_day = int(online_store.client().hget(online_store.prefix + "meta", "max_day"))
    assert last_day == (days.max() - pd.Timestamp(0, tz="UTC")).days
    keep = last_day - online_store.open_days + 1 - online_store.config.history_days()
    fields, compacted = 0, 0
    for key in client.scan_iter(match=f"{online_store.prefix}c:*"):
        # Every hash expires when idle; one not touched since the cutoff last moved waits for its
        # next write (or its TTL) to be compacted.
        assert 0 < client.ttl(key) <= online_store.entity_ttl_seconds
        state = client.hgetall(key)
        if int(state[b"k"]) != keep + online_store.config.history_days():
            continue
        compacted += 1
        for name, value in state.items():
            kind, rest = name[:2], name[2:]
            if kind == b"e:":
                assert int(value.split(b",")[0]) // 86_400_000_000 > last_day - online_store.open_days
            elif kind == b"b:":
                assert keep <= int(rest) <= last_day - online_store.open_days
            elif kind == b"p:":
                assert int(value) >= keep * 86_400_000_000
            fields += 1
    assert compacted > 0
    for key in client.scan_iter(match=f"{online_store.prefix}t:*"):
        state = client.hgetall(key)
        if int(state[b"k"]) == keep + online_store.config.history_days():
            assert all(int(name[2:]) >= keep for name in state if name[:2] == b"b:")
    assert fields < len(history)  # folded: far fewer fields than events


def test_no_card_number_or_raw_customer_id_reaches_redis_or_its_append_only_file(online_store, online_store_url):
    """The feature pipeline's write path (``apply_records``) with the hostile corpus, transactions
    of recognisable customer ids and a label whose id is a card number: Redis keys, values and the
    embedded server's AOF hold only pseudonyms, never one of those card numbers or a raw customer id.
    (Not "no Luhn-valid 16 digits": the store's microsecond timestamps are such numbers one time in ten.)"""
    import json
    import re
    import uuid
    from datetime import datetime, timezone
    from pathlib import Path

    from fraud_platform.domain.card_data import pan_spans
    from fraud_platform.infra.online_store_server import EmbeddedOnlineStore
    from fraud_platform_tests.hostile import hostile_records
    from fraud_platform_tests.streaming.conftest import transaction
    from spark_streaming.feature_pipeline import apply_records

    def pans(text: str) -> set[str]:
        return {re.sub(r"\D", "", text[a:b]) for a, b in pan_spans(text)}

    marker = f"cust-raw-{uuid.uuid4().hex}"
    txs = [dict(transaction(i, prefix=f"tx-{marker[-8:]}"), customer_id=f"{marker}-{i}") for i in range(5)]
    values = [json.dumps(t).encode() for t in txs] + [r.payload for r in hostile_records()]
    assert apply_records(online_store, "transactions", values)[1] >= len(txs)
    known_at = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    labels = [json.dumps({"transaction_id": tx, "is_fraud": True, "label_type": "chargeback", "known_at": known_at,
                          "fraud_scenario": 1}).encode() for tx in ("4539148803436467", txs[0]["transaction_id"])]
    assert apply_records(online_store, "labels", labels) == (1, 1)  # the card number is no transaction id
    injected = set().union(*(pans(v.decode("utf-8", "replace")) for v in values + labels if v))
    assert len(injected) >= 5 and "4539148803436467" in injected

    client = online_store.client()
    texts = []
    for key in client.scan_iter(match=f"{online_store.prefix}*"):
        kind = client.type(key)
        value = client.hgetall(key) if kind == b"hash" else client.lrange(key, 0, -1) if kind == b"list" else \
            client.smembers(key) if kind == b"set" else client.zrange(key, 0, -1) if kind == b"zset" else client.get(key)
        texts += [key.decode(errors="replace"), repr(value)]
    assert len(texts) > 10 and not any(pans(t) & injected or marker in t for t in texts)
    for path in Path(EmbeddedOnlineStore.default().data_dir).rglob("*"):  # Redis writes the AOF before it replies
        if path.is_file():
            data = path.read_bytes()
            assert marker.encode() not in data and not pans(data.decode("utf-8", "replace")) & injected, path


def test_the_batch_read_decodes_the_same_history_as_the_per_field_decoder() -> None:
    """The scorer's one-string read (``decode_history_joined``) gives exactly the rows, order and
    dtypes of ``decode_history`` over the same hashes: every field kind, empty hashes, the cutoff."""
    from fraud_platform.infra.online_store import _fields, decode_history, decode_history_joined

    customers = {
        "c1": {b"e:t1": b"1767225600000000,1250,T9", b"b:20450": b"3,4599", b"p:T7": b"1767139200000000", b"k": b"20451",
               b"e:t2": b"1767225700000000,1,T7", b"b:20449": b"1,100"},
        "c2": {},
        "c3": {b"p:T1": b"1767000000000000"},
    }
    terminals = {
        "T9": {b"b:20450": b"12", b"f:t0": b"20449,1767200000000000", b"s:20440:1767100000000000": b"2", b"k": b"20451"},
        "T7": {},
        "T1": {b"s:20441:1767110000000000": b"1", b"b:20441": b"5"},
    }
    joined = lambda h: b"\n".join(x for item in h.items() for x in item)  # noqa: E731 - as _READ_HISTORY joins
    for names in (["c1", "c2", "c3"], [], ["c2"]):
        for terms in (["T9", "T7", "T1"], [], ["T7"]):
            c_hashes, t_hashes = [customers[c] for c in names], [terminals[t] for t in terms]
            assert [_fields(joined(h)) for h in c_hashes] == c_hashes
            expected = decode_history(names, c_hashes, terms, t_hashes)
            got = decode_history_joined(names, [joined(h) for h in c_hashes], terms, [joined(h) for h in t_hashes])
            for table in FeatureSnapshot.TABLES:
                pd.testing.assert_frame_equal(getattr(got, table), getattr(expected, table), check_dtype=True)
