"""Analyst verdicts train the next model before their day matures (issue 13, section 2).

A lake with matured sandbox days and immature processed days (written as Parquet, no Spark: the
label fold itself, ``label_outcomes``, is tested with Spark in console/test_verdict_labels.py):
``transaction_features`` puts the verdict-labelled immature rows, with their label, beside the
matrix; unlabelled and chargeback-only immature rows stay out; a chargeback after a "legitimate"
verdict makes the row a fraud. ``fraud_model``'s final fit takes them; folds and test do not."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from fraud_platform.defs.features import transaction_features
from fraud_platform.defs.features.assets import read_matrix, read_verdict_rows
from fraud_platform.defs.resources import LakeProcessingResource, LakeResource
from fraud_platform.domain.catalogue import PROCESSED_TRANSACTIONS, RAW_LABELS, SANDBOX_TRANSACTIONS
from fraud_platform.domain.features import FEATURE_COLUMNS, compute_batch_features
from fraud_platform.domain.schema import PROCESSED_TRANSACTIONS_SCHEMA, RAW_LABELS_SCHEMA
from fraud_platform.domain.simulator import SimulationConfig, TransactionSimulator
from fraud_platform.domain.splits import SplitConfig
from fraud_platform.infra.lake import LocalLakeStore
from fraud_platform.ml.datasets import sandbox_table, simulated_sandbox_frame
from fraud_platform.ml.training import Candidate, TrainingConfig, fit, plan_training, training_rows
from fraud_platform.quality.gate import record_verdicts
from fraud_platform.quality.runner import ValidationOutcome

START = date(2026, 1, 1)
SANDBOX_DAYS = 7  # 2026-01-01 .. 07 matured; 08 .. 10 immature (maturity 3 days, watermark on the 10th)


def _passed(store: LocalLakeStore, dataset, frame: pd.DataFrame) -> None:
    """Record a passing blocking-check verdict per partition (the gate readers honour)."""
    outcomes = [ValidationOutcome(dataset.asset_key, d, int((frame["event_date"] == d).sum()), 0, [])
                for d in sorted(frame["event_date"].unique())]
    record_verdicts(store, dataset, outcomes)


def _at(day: int, hour: int) -> pd.Timestamp:
    return pd.Timestamp(datetime(2026, 1, day, hour, tzinfo=timezone.utc))


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    sim = TransactionSimulator(SimulationConfig(start=START, days=10, n_customers=150, n_terminals=300, seed=3,
                                                fraud_rate=0.03, label_delay_days=3))
    frame = simulated_sandbox_frame(sim, SplitConfig(train_days=3, validation_days=1, delay_days=1, test_days=2))
    store = LocalLakeStore(tmp_path_factory.mktemp("lake"))
    matured = frame[frame["event_date"] < START + timedelta(days=SANDBOX_DAYS)]
    for day, part in matured.groupby("event_date"):
        store.write_parquet(f"{SANDBOX_TRANSACTIONS.partition_prefix(day)}/part-0.parquet", sandbox_table(part))
    _passed(store, SANDBOX_TRANSACTIONS, matured)

    # Immature days as the processed zone holds them: no labels, except five day-9 transactions.
    later = frame[frame["event_date"] >= START + timedelta(days=SANDBOX_DAYS)].drop(columns=["matured_at", "split"]).copy()
    later[["label_type", "label_known_at", "fraud_scenario"]] = None
    later["is_fraud"] = pd.array([pd.NA] * len(later), dtype="Int32")
    later["processed_at"] = _at(10, 23)
    day9 = later.index[later["event_date"] == date(2026, 1, 9)]
    a, b, c, d, e = (later.loc[i, "transaction_id"] for i in day9[:5])
    f = later.loc[later["event_date"] == date(2026, 1, 10), "transaction_id"].iloc[0]
    folded = {  # the processed zone's fold: any fraud wins, earliest; a chargeback beats a verdict
        a: (1, "analyst_confirmed", _at(9, 23)),    # confirmed fraud
        b: (1, "chargeback", _at(10, 10)),           # "legitimate" at 9 23:00, then a chargeback
        d: (1, "chargeback", _at(10, 8)),            # a chargeback only
        e: (0, "analyst_legitimate", _at(9, 23)),    # legitimate
        f: (0, "analyst_legitimate", _at(10, 20)),   # legitimate, known before the watermark
    }
    for tid, (is_fraud, label_type, known_at) in folded.items():
        row = later["transaction_id"] == tid
        later.loc[row, ["is_fraud", "label_type", "label_known_at"]] = [is_fraud, label_type, known_at]
    for day, part in later.groupby("event_date"):
        store.write_parquet(f"{PROCESSED_TRANSACTIONS.partition_prefix(day)}/part-0.parquet",
                            pa.Table.from_pandas(part[PROCESSED_TRANSACTIONS_SCHEMA.names], schema=PROCESSED_TRANSACTIONS_SCHEMA,
                                                 preserve_index=False))
    _passed(store, PROCESSED_TRANSACTIONS, later)

    raw = pd.DataFrame([  # the label events as landed (partitioned by known_at)
        (a, True, "analyst_confirmed", _at(9, 23)), (b, False, "analyst_legitimate", _at(9, 23)),
        (b, True, "chargeback", _at(10, 10)), (d, True, "chargeback", _at(10, 8)),
        (e, False, "analyst_legitimate", _at(9, 23)), (f, False, "analyst_legitimate", _at(10, 20)),
        (c, True, "chargeback", _at(10, 22)),  # landed after processed was built: not folded yet; the watermark
    ], columns=["transaction_id", "is_fraud", "label_type", "known_at"])
    raw = raw.assign(fraud_scenario=None, _kafka_topic="labels", _kafka_partition=0,
                     _kafka_offset=np.arange(len(raw)), _ingested_at=_at(10, 21), _batch_id="b1")
    for day, part in raw.groupby(raw["known_at"].dt.date):
        store.write_parquet(f"{RAW_LABELS.partition_prefix(day)}/part-0.parquet",
                            pa.Table.from_pandas(part[RAW_LABELS_SCHEMA.names], schema=RAW_LABELS_SCHEMA, preserve_index=False))

    result = dg.materialize([transaction_features], resources={
        "lake": LakeResource(root=str(store.root)), "lake_processing": LakeProcessingResource(label_maturity_days=3)})
    assert result.success
    return {"store": store, "frame": frame, "matured": matured, "later": later, "ids": (a, b, c, d, e, f), "result": result}


def test_verdicts_on_immature_days_become_training_rows_with_their_label(lake):
    a, b, c, d, e, f = lake["ids"]
    verdicts = read_verdict_rows(lake["store"]).set_index("transaction_id")
    labels = verdicts["is_fraud"].to_dict()
    assert labels == {a: 1, b: 1, e: 0, f: 0}
    assert c not in labels and d not in labels  # unlabelled; a chargeback alone waits for maturity
    assert verdicts.loc[b, "is_fraud"] == 1  # the chargeback after the "legitimate" verdict wins
    # The matrix (evaluation, drift, EDA) stays on matured days.
    matrix = read_matrix(lake["store"])
    assert len(matrix) == len(lake["matured"]) and not set(labels) & set(matrix["transaction_id"])
    metadata = lake["result"].asset_materializations_for_node("transaction_features")[0].metadata
    assert metadata["verdict_rows"].value == 4 and metadata["immature_days"].value == "2026-01-08, 2026-01-09, 2026-01-10"


def test_verdict_rows_carry_point_in_time_features_over_the_full_history(lake):
    history = pd.concat([lake["matured"], lake["later"].dropna(axis=1, how="all")], ignore_index=True)
    expected = compute_batch_features(history).set_index(history["transaction_id"])
    verdicts = read_verdict_rows(lake["store"]).set_index("transaction_id")
    np.testing.assert_allclose(verdicts[FEATURE_COLUMNS].to_numpy(dtype=float),
                               expected.loc[verdicts.index, FEATURE_COLUMNS].to_numpy(dtype=float))


def test_final_fit_takes_the_verdict_rows_folds_and_test_do_not(lake):
    matrix, verdicts = read_matrix(lake["store"]), read_verdict_rows(lake["store"])
    days = sorted(pd.to_datetime(matrix["event_date"]).dt.date.unique())
    config = TrainingConfig(split=SplitConfig(train_days=3, validation_days=1, delay_days=1, test_days=2), n_folds=1)
    plan = plan_training(days, config)
    assert plan.splits.test[1] == START + timedelta(days=SANDBOX_DAYS - 1)  # test ends on the last matured day
    fitted = training_rows(matrix, plan.final_train, verdicts)
    assert set(verdicts["transaction_id"]) <= set(fitted["transaction_id"])
    assert len(fitted) == len(training_rows(matrix, plan.final_train)) + len(verdicts)
    # The final fit runs on them (a cheap family: what is checked is the data path, not the model).
    config = TrainingConfig(split=config.split, n_jobs=1, families=("logistic_regression",))
    model = fit(matrix, plan.final_train, Candidate("logistic_regression", "none", {"C": 1.0}), config, verdicts)
    assert model.predict_proba(verdicts[FEATURE_COLUMNS].astype("float64")).shape == (len(verdicts), 2)
