"""Landing against hostile input: every record of the corpus ends in exactly one place (raw zone or
DLQ -> quarantine), a row the writer still refuses costs only itself, an id landed once never lands
again whatever its event date, and no card number is at rest anywhere landing writes."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import stat
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa

from fraud_platform.domain.card_data import contains_pan
from fraud_platform.infra.dead_letters import parse_dead_letter_headers
from fraud_platform.infra.kafka import make_producer, read_range
from fraud_platform.infra.landing import Decoded, LandingEngine, original_key
from fraud_platform.infra.landing_specs import quarantine_spec, transactions_spec
from fraud_platform.infra.lake import LocalLakeStore
from fraud_platform.settings import IngestionSettings
from fraud_platform_tests.hostile import hostile_records, pans_in_files, pans_in_topic
from fraud_platform_tests.ingestion.test_landing import _with


def _produce(settings, topic: str, messages: list[tuple[bytes, bytes | None]]) -> None:
    """One partition, in order, with room for the corpus' 2 MiB records."""
    producer = make_producer(settings, **{"message.max.bytes": 16 * 1024 * 1024})
    for key, value in messages:
        producer.produce(topic, value=value, key=key, partition=0)
        producer.poll(0)
    assert producer.flush(60) == 0


def _dlq(settings, topic: str) -> list:
    return [m for chunk, _ in read_range(settings, topic, {p: 0 for p in range(settings.topics.partitions)}) for m in chunk]


def test_hostile_corpus_reconciles_in_landing_and_no_pan_is_at_rest(kafka_settings, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    topics = kafka_settings.topics
    corpus = hostile_records()
    _produce(kafka_settings, topics.transactions, [(f"h{i}".encode(), r.payload) for i, r in enumerate(corpus)])
    store = LocalLakeStore(tmp_path / "lake")

    landed = LandingEngine(store, kafka_settings, transactions_spec(topics)).land()
    rejected = [r for r in corpus if not r.accepted]
    assert (landed.consumed, landed.valid, landed.dead_lettered) == (len(corpus), len(corpus) - len(rejected), len(rejected))
    raw = store.read_parquet(store.parquet_keys("raw", "transactions")).to_pandas()
    assert sorted(raw["transaction_id"]) == sorted(json.loads(r.payload)["transaction_id"] for r in corpus if r.accepted)

    quarantined = LandingEngine(store, kafka_settings, quarantine_spec(topics)).land()
    assert quarantined.valid == len(rejected)
    rows = store.read_parquet(store.parquet_keys("quarantine", "transactions")).to_pandas()
    by_key = {k.decode(): (rule, field) for k, rule, field in zip(rows["original_key"], rows["rule"], rows["field"])}
    for i, record in enumerate(corpus):  # every rejected record once, with the corpus' rule and field
        if not record.accepted:
            assert by_key.pop(f"h{i}") == (record.expect, record.field), record.reason
    assert not by_key

    # 2 MiB dead letters: cut to the broker limit with size and hash; the original kept unless it holds a PAN.
    cut = rows[rows["original_size"].notna()]
    assert sorted(cut["rule"]) == ["invalid_value", "raw_pan"]
    for _, row in cut.iterrows():
        assert len(row["original_value"]) < IngestionSettings().dlq_max_message_bytes and row["original_size"] > 2 * 1024 * 1024
        i = int(row["original_key"][1:])
        assert row["original_sha256"] == hashlib.sha256(corpus[i].payload).hexdigest()
        kept = original_key("transactions", row["original_sha256"])
        assert store.exists(kept) == (row["rule"] != "raw_pan")
        if store.exists(kept):
            assert store.read_bytes(kept) == corpus[i].payload

    assert pans_in_files(tmp_path) == []
    assert pans_in_topic(kafka_settings, topics.transactions_dlq) == []
    assert not contains_pan(caplog.text)


def test_a_row_the_writer_refuses_is_dead_lettered_and_the_rest_lands(kafka_settings, tmp_path: Path) -> None:
    """A validator gap is simulated by a decoder that lets values through the schema cannot hold:
    each poison class sits between valid records; the valid ones all land."""
    topics = kafka_settings.topics
    poison = {  # transaction_id -> a value that gets past the (simulated) validator
        "tx-poison-amount": {"amount": 10**400},
        "tx-poison-int32": {"schema_version": 2**31},
        "tx-poison-int64": {"schema_version": 2**63},
        "tx-poison-time": {"event_time": "not a time"},
        "tx-poison-null": {"customer_id": object()},
    }
    ids = []
    for n, tx_id in enumerate(poison):
        ids += [f"tx-valid-{n}-a", tx_id, f"tx-valid-{n}-b"]
    _produce(kafka_settings, topics.transactions, [(i.encode(), _with(transaction_id=i)) for i in ids])
    spec = transactions_spec(topics)

    def lax(msg):
        decoded = spec.decode(msg)
        change = poison.get(decoded.row["transaction_id"], {})
        return Decoded({**decoded.row, **change}, decoded.day)

    store = LocalLakeStore(tmp_path / "lake")
    landed = LandingEngine(store, kafka_settings, dataclasses.replace(spec, decode=lax)).land()
    assert (landed.consumed, landed.valid, landed.dead_lettered) == (len(ids), 2 * len(poison), len(poison))
    assert landed.rejections_by_rule == {"unwritable_record": len(poison)}
    raw = store.read_parquet(store.parquet_keys("raw", "transactions")).to_pandas()
    assert sorted(raw["transaction_id"]) == sorted(i for i in ids if i not in poison)
    letters = {m.value(): parse_dead_letter_headers(m.headers()) for m in _dlq(kafka_settings, topics.transactions_dlq)}
    assert set(letters) == {_with(transaction_id=i) for i in poison}  # the original bytes, traceable
    fields = {json.loads(v)["transaction_id"]: h["error.field"] for v, h in letters.items()}
    assert fields == {"tx-poison-amount": "amount", "tx-poison-int32": "schema_version", "tx-poison-int64": "schema_version",
                      "tx-poison-time": "event_time", "tx-poison-null": "customer_id"}


def test_an_id_landed_once_never_lands_again_whatever_its_event_date(kafka_settings, tmp_path: Path) -> None:
    topics = kafka_settings.topics
    store = LocalLakeStore(tmp_path / "lake")
    first = _with(transaction_id="tx-cross-day-1", event_time="2026-01-02T10:00:00Z")
    _produce(kafka_settings, topics.transactions, [(b"k", first)])
    assert LandingEngine(store, kafka_settings, transactions_spec(topics)).land().valid == 1

    resent = [  # the same id on other days, in a later run (fresh engine) and twice within one run
        _with(transaction_id="tx-cross-day-1", event_time="2026-01-05T10:00:00Z"),
        _with(transaction_id="tx-cross-day-2", event_time="2026-01-03T10:00:00Z"),
        _with(transaction_id="tx-cross-day-2", event_time="2026-01-04T10:00:00Z"),
    ]
    _produce(kafka_settings, topics.transactions, [(b"k", v) for v in resent])
    again = LandingEngine(store, kafka_settings, transactions_spec(topics)).land()
    assert (again.valid, again.rejections_by_rule) == (1, {"duplicate_transaction_id": 2})
    raw = store.read_parquet(store.parquet_keys("raw", "transactions")).to_pandas()
    assert sorted(raw["transaction_id"]) == ["tx-cross-day-1", "tx-cross-day-2"]


def test_the_dedupe_index_keeps_only_the_retention_window(kafka_settings, tmp_path: Path) -> None:
    topics = kafka_settings.topics
    store = LocalLakeStore(tmp_path / "lake")
    today = datetime.now(timezone.utc).date()
    spec = transactions_spec(topics)
    old = f"{spec.dedupe_prefix}/landed={(today - timedelta(days=8)).isoformat()}/old-batch.parquet"
    recent = f"{spec.dedupe_prefix}/landed={(today - timedelta(days=6)).isoformat()}/recent-batch.parquet"
    store.write_parquet(old, pa.table({"transaction_id": ["tx-expired-id"]}))
    store.write_parquet(recent, pa.table({"transaction_id": ["tx-remembered"]}))
    for name in ("old-batch", "recent-batch"):  # committed batches, as far as recovery is concerned
        store.write_json(f"{spec.manifest_prefix}/{name}.json", {
            "batch_id": name, "topic": topics.transactions, "ranges": {}, "consumed": 0, "valid": 0, "dead_lettered": 0,
            "rejections_by_rule": {}, "rows_by_date": {}, "files": [], "committed_at": "2026-01-01T00:00:00+00:00"})
    _produce(kafka_settings, topics.transactions, [(b"k", _with(transaction_id=i)) for i in ("tx-expired-id", "tx-remembered")])

    landed = LandingEngine(store, kafka_settings, spec, ingestion=IngestionSettings(dedupe_window_days=7)).land()
    assert (landed.valid, landed.rejections_by_rule) == (1, {"duplicate_transaction_id": 1})
    assert not store.exists(old) and store.exists(recent)  # pruned after the window: memory stays bounded
    index = store.read_parquet([k for k in store.list(spec.dedupe_prefix) if "old-batch" not in k and "recent" not in k])
    assert index.column("transaction_id").to_pylist() == ["tx-expired-id"]


def test_the_scorer_remembers_an_id_as_long_as_landing_does(monkeypatch) -> None:
    from fraud_platform.settings import OnlineStoreSettings

    monkeypatch.delenv("FRAUD_ONLINE_STORE_DEDUPE_TTL_SECONDS", raising=False)
    monkeypatch.setenv("FRAUD_DEDUPE_WINDOW_DAYS", "3")
    assert OnlineStoreSettings.from_env().dedupe_ttl_seconds == 3 * 86_400  # one retention, not two defaults
    monkeypatch.setenv("FRAUD_ONLINE_STORE_DEDUPE_TTL_SECONDS", "60")
    assert OnlineStoreSettings.from_env().dedupe_ttl_seconds == 60  # an explicit TTL still wins


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]}


def test_cli_files_are_private_and_a_key_is_required_outside_local(kafka_settings, broker: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    with_pans = [r.payload for r in hostile_records() if r.expect == "raw_pan"]
    _produce(kafka_settings, kafka_settings.topics.transactions, [(b"k", _with()), (b"k", b"not json"), *((b"k", v) for v in with_pans)])
    env = dict(os.environ, FRAUD_PLATFORM_HOME=str(home), FRAUD_KAFKA_BOOTSTRAP_SERVERS=broker)
    env.pop("FRAUD_LAKE_ROOT", None)
    cmd = [sys.executable, "-m", "fraud_platform.cli", "land", "--dataset", "all"]

    refused = subprocess.run(cmd, env={**env, "FRAUD_PLATFORM_ENV": "production", "FRAUD_TOKENISATION_KEY": ""}, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "FRAUD_TOKENISATION_KEY" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert not (home / "lake").exists()

    local = subprocess.run(cmd, env={**env, "FRAUD_TOKENISATION_KEY": ""}, capture_output=True, text=True, timeout=300)
    assert local.returncode == 0, local.stderr
    assert local.stderr.count("FRAUD_TOKENISATION_KEY is not set") == 1  # warned once
    modes = _modes(home)
    assert "secrets/tokenisation.key" in modes and any(k.endswith(".parquet") for k in modes)
    loose = {path: oct(mode) for path, mode in modes.items() if mode & 0o077}
    assert not loose, loose
    assert pans_in_files(home) == [] and not contains_pan(local.stdout + local.stderr)  # every file under the home, the logs
