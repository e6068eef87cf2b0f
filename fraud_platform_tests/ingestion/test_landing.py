"""Validated, exactly-once landing from Kafka into the raw and quarantine zones."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from fraud_platform.domain.card_data import mask_pans_bytes
from fraud_platform.infra.dead_letters import parse_dead_letter_headers
from fraud_platform.infra.kafka import make_consumer, read_range
from fraud_platform.infra.landing import LandingEngine
from fraud_platform.infra.landing_specs import quarantine_spec, transactions_spec
from fraud_platform.infra.lake import LocalLakeStore
from fraud_platform.infra.publish import RateLimitedProducer

VALID = {
    "transaction_id": "tx-000000000001",
    "event_time": "2026-01-02T10:00:00.123456Z",
    "customer_id": "C000001",
    "card_token": "tok_0123456789abcdef",
    "terminal_id": "T0000001",
    "amount": 42.5,
    "currency": "EUR",
    "merchant_category": "5411",
    "channel": "contactless",
    "country": "FR",
}


def _with(**changes) -> bytes:
    record = {**VALID, **changes}
    return json.dumps({k: v for k, v in record.items() if v is not ...}).encode()


# (rule, field, message bytes) for every class of bad input the platform rejects.
BAD_RECORDS = [
    ("malformed_json", None, b'{"transaction_id": "tx-1", '),
    ("malformed_json", None, b"[1, 2, 3]"),
    ("missing_field", "amount", _with(transaction_id="tx-missing-amount", amount=...)),
    ("wrong_type", "amount", _with(transaction_id="tx-wrong-type", amount="forty")),
    ("unexpected_field", "promo_code", _with(transaction_id="tx-unexpected", promo_code="SPRING")),
    ("raw_pan", "pan", _with(transaction_id="tx-extra-pan", pan="4111111111111111")),  # checked before the schema
    ("non_positive_amount", "amount", _with(transaction_id="tx-negative", amount=-5.0)),
    ("absurd_amount", "amount", _with(transaction_id="tx-absurd", amount=9.9e9)),
    ("unknown_currency", "currency", _with(transaction_id="tx-currency", currency="XYZ")),
    ("unknown_channel", "channel", _with(transaction_id="tx-channel", channel="carrier_pigeon")),
    ("unknown_country", "country", _with(transaction_id="tx-country", country="ZZ")),
    ("unknown_merchant_category", "merchant_category", _with(transaction_id="tx-unknown-mcc", merchant_category="0000")),
    ("future_timestamp", "event_time", _with(transaction_id="tx-future", event_time="2099-01-01T00:00:00Z")),
    ("timestamp_out_of_range", "event_time", _with(transaction_id="tx-ancient", event_time="1970-01-01T00:00:00Z")),
    ("invalid_value", "event_time", _with(transaction_id="tx-naive", event_time="2026-01-02T10:00:00")),
    ("invalid_value", "transaction_id", _with(transaction_id="tx-1")),  # shorter than 8 characters
    ("raw_pan", "card_token", _with(transaction_id="tx-raw-pan", card_token="4111111111111111")),
    ("duplicate_transaction_id", "transaction_id", _with()),  # re-send of the valid record
]


def _produce(settings, topic: str, values: list[bytes]) -> None:
    producer = RateLimitedProducer(settings)
    producer.send(topic, [(b"k", v) for v in values])
    producer.close()


def test_every_bad_input_class_is_dead_lettered_with_its_reason(kafka_settings, tmp_path: Path) -> None:
    topics = kafka_settings.topics
    verification = _with(transaction_id="tx-zero-amount", amount=0)  # an account verification: accepted
    _produce(kafka_settings, topics.transactions, [_with(), verification] + [raw for _, _, raw in BAD_RECORDS])
    store = LocalLakeStore(tmp_path / "lake")

    landed = LandingEngine(store, kafka_settings, transactions_spec(topics)).land()
    assert (landed.consumed, landed.valid, landed.dead_lettered) == (len(BAD_RECORDS) + 2, 2, len(BAD_RECORDS))

    # The DLQ holds the original bytes and the reason (rule, field, value) in headers.
    partitions = {p: 0 for p in range(topics.partitions)}
    dead = [m for chunk, _ in read_range(kafka_settings, topics.transactions_dlq, partitions) for m in chunk]
    by_value = {m.value(): parse_dead_letter_headers(m.headers()) for m in dead}
    for rule, field, raw in BAD_RECORDS:
        headers = by_value[mask_pans_bytes(raw)]  # card numbers never reach the DLQ in full
        assert headers["error.rule"] == rule
        assert headers["error.field"] == (field or "")
        assert headers["source.topic"] == topics.transactions
        assert headers["error.message"]
    assert by_value[_with(transaction_id="tx-wrong-type", amount="forty")]["error.value"] == "'forty'"

    # The quarantine zone keeps every dead letter, once, with its source offset.
    quarantined = LandingEngine(store, kafka_settings, quarantine_spec(topics)).land()
    assert quarantined.valid == len(BAD_RECORDS)
    rows = store.read_parquet(store.parquet_keys("quarantine", "transactions")).to_pandas()
    assert sorted(rows["rule"]) == sorted(rule for rule, _, _ in BAD_RECORDS)
    assert set(rows["original_value"]) == {mask_pans_bytes(raw) for _, _, raw in BAD_RECORDS}
    assert rows[["source_partition", "source_offset"]].drop_duplicates().shape[0] == len(BAD_RECORDS)


def test_rerun_lands_nothing_twice_and_new_data_appends(kafka_settings, tmp_path: Path) -> None:
    topics = kafka_settings.topics
    store = LocalLakeStore(tmp_path / "lake")
    engine = LandingEngine(store, kafka_settings, transactions_spec(topics))
    _produce(kafka_settings, topics.transactions, [_with(transaction_id=f"tx-{i:012d}") for i in range(300)])
    assert engine.land().valid == 300
    assert engine.land().consumed == 0
    _produce(kafka_settings, topics.transactions, [_with(transaction_id=f"tx-{i:012d}") for i in range(300, 350)])
    again = LandingEngine(store, kafka_settings, transactions_spec(topics)).land()
    assert (again.consumed, again.valid) == (50, 50)
    table = store.read_partition("raw", "transactions", "2026-01-02").to_pandas()
    assert len(table) == 350 and table["transaction_id"].is_unique
    assert str(table["event_time"].dtype) == "datetime64[us, UTC]"


def _land_in_subprocess(home: Path, lake: Path, settings, failpoint: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ, FRAUD_PLATFORM_HOME=str(home), FRAUD_LAKE_ROOT=str(lake))
    env.pop("FRAUD_LANDING_FAILPOINT", None)
    if failpoint:
        env["FRAUD_LANDING_FAILPOINT"] = failpoint
    return subprocess.run(
        [sys.executable, "-m", "fraud_platform.cli", "land", "--dataset", "transactions"],
        env=env, capture_output=True, text=True, timeout=300,
    )


@pytest.mark.slow
def test_kill_between_write_and_commit_loses_and_duplicates_nothing(kafka_settings, platform_home: Path, tmp_path: Path) -> None:
    topics = kafka_settings.topics
    ids = [f"tx-{i:012d}" for i in range(5000)]
    _produce(kafka_settings, topics.transactions, [_with(transaction_id=i) for i in ids] + [b"not json"])
    lake = tmp_path / "lake"

    crashed = _land_in_subprocess(platform_home, lake, kafka_settings, "after_write")
    assert crashed.returncode == -9, crashed.stderr
    store = LocalLakeStore(lake)
    assert store.parquet_keys("raw", "transactions"), "files were written before the crash"
    assert not store.list("_manifests/raw/transactions"), "but nothing was committed"

    recovered = _land_in_subprocess(platform_home, lake, kafka_settings, None)
    assert recovered.returncode == 0, recovered.stderr
    assert "consumed 5001 = 5000 landed + 1 dead-lettered" in recovered.stdout
    table = store.read_parquet(store.parquet_keys("raw", "transactions")).to_pandas()
    assert sorted(table["transaction_id"]) == ids


@pytest.mark.slow
def test_simulated_stream_reconciles(kafka_settings, tmp_path: Path) -> None:
    """~100k messages with every invalid class injected: produced = landed valid + dead-lettered."""
    from datetime import date

    from fraud_platform.domain.simulator import SimulationConfig, TransactionSimulator
    from fraud_platform.infra.publish import publish_simulation

    simulator = TransactionSimulator(SimulationConfig(date(2026, 1, 1), 12, n_customers=4000, n_terminals=8000, seed=7))
    report = publish_simulation(kafka_settings, simulator, inject_invalid_rate=0.01, seed=7)
    topics = kafka_settings.topics
    produced_tx = report.produced[topics.transactions]
    assert produced_tx > 95_000
    assert len(report.injected_invalid) >= 14, report.injected_invalid  # every rejection rule

    store = LocalLakeStore(tmp_path / "lake")
    landed = LandingEngine(store, kafka_settings, transactions_spec(topics), batch_rows=40_000).land()
    assert landed.consumed == produced_tx
    assert landed.valid + landed.dead_lettered == produced_tx
    assert landed.valid == report.expected_valid_transactions
    assert landed.rejections_by_rule == report.injected_invalid
    assert len(landed.batches) >= 2
    quarantined = LandingEngine(store, kafka_settings, quarantine_spec(topics)).land()
    assert quarantined.valid == landed.dead_lettered
    rows = sum(store.read_parquet([k], columns=["transaction_id"]).num_rows for k in store.parquet_keys("raw", "transactions"))
    assert rows == landed.valid


def test_import_csv_and_parquet(kafka_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FDH-style history (no card/currency columns) imported through the same validation."""
    lake = tmp_path / "lake"
    monkeypatch.setenv("FRAUD_LAKE_ROOT", str(lake))
    history = pd.DataFrame(
        {
            "TRANSACTION_ID": [f"imp-{i:08d}" for i in range(6)],
            "TX_DATETIME": [f"2026-02-0{1 + i % 3} 1{i}:00:00" for i in range(6)],
            "CUSTOMER_ID": ["11", "12", "13", "11", "12", "13"],
            "TERMINAL_ID": ["501", "502", "503", "504", "505", "506"],
            "TX_AMOUNT": ["10.5", "20", "-3", "99.99", "abc", "7"],
            "TX_FRAUD": ["0", "1", "0", "0", "0", "1"],
        }
    )
    csv_path = tmp_path / "history.csv"
    history.to_csv(csv_path, index=False)
    parquet_path = tmp_path / "history.parquet"
    renamed = history.assign(TRANSACTION_ID=[f"pq-{i:08d}" for i in range(6)]).rename(columns={"TX_AMOUNT": "value_eur"})
    renamed["value_eur"] = pd.to_numeric(renamed["value_eur"], errors="coerce")
    renamed.to_parquet(parquet_path)

    common = ["--set", "currency=EUR", "--set", "merchant_category=5411", "--set", "channel=card_present", "--set", "country=FR"]
    from fraud_platform.cli import main

    # 2 of 6 rows are bad on purpose: allow it (the default fails above 5 %).
    common += ["--max-rejected-share", "0.5"]
    main(["import", str(csv_path), *common])
    main(["import", str(parquet_path), "--map", "value_eur=amount", *common])

    store = LocalLakeStore(lake)
    raw = store.read_parquet(store.parquet_keys("raw", "transactions")).to_pandas()
    # CSV: -3 and "abc" are rejected; Parquet: -3 rejected and the NaN amount is missing -> rejected.
    assert sorted(raw["transaction_id"]) == sorted(
        [f"imp-{i:08d}" for i in (0, 1, 3, 5)] + [f"pq-{i:08d}" for i in (0, 1, 3, 5)]
    )
    assert raw["card_token"].str.startswith("tok_").all()
    assert (raw.loc[raw.transaction_id == "imp-00000001", "amount"] == 20.0).all()
    quarantine = store.read_parquet(store.parquet_keys("quarantine", "transactions")).to_pandas()
    assert sorted(quarantine["rule"]) == ["missing_field", "non_positive_amount", "non_positive_amount", "wrong_type"]
    labels = store.read_parquet(store.parquet_keys("raw", "labels")).to_pandas()
    assert sorted(labels["transaction_id"]) == ["imp-00000001", "imp-00000005", "pq-00000001", "pq-00000005"]
    assert (labels["known_at"] - pd.Timestamp("2026-02-01", tz="UTC")).min() >= pd.Timedelta(days=7)


def test_import_rejects_unknown_mapping(kafka_settings, tmp_path: Path, capsys) -> None:
    path = tmp_path / "h.csv"
    pd.DataFrame({"a": [1]}).to_csv(path, index=False)
    from fraud_platform.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["import", str(path), "--map", "nope=amount"])
    assert exit_info.value.code == 2
    assert "--map names column(s) ['nope']" in capsys.readouterr().err
