"""Every consumer names lake datasets through the catalogue: the dbt sources, the landing specs and
the quality suites agree with it, and the maturity rule is the one the lake uses."""

from __future__ import annotations

from datetime import date, datetime, timezone

import yaml

from fraud_platform.domain import catalogue
from fraud_platform.infra.landing_specs import labels_spec, quarantine_spec, transactions_spec
from fraud_platform.quality import DATASETS
from fraud_platform.settings import TopicNames
from fraud_platform.warehouse import DBT_PROJECT_DIR, LAKE_SOURCES


def test_dbt_sources_read_the_catalogue_locations() -> None:
    sources = yaml.safe_load((DBT_PROJECT_DIR / "models" / "staging" / "_sources.yml").read_text())
    tables = {t["name"]: t["config"]["meta"] for s in sources["sources"] for t in s["tables"]}
    assert set(tables) == set(LAKE_SOURCES)
    for name, meta in tables.items():
        entry = catalogue.DATASETS[name]
        assert (meta["zone"], meta["dataset"]) == (entry.zone, entry.name)


def test_landing_and_quality_use_catalogue_entries() -> None:
    topics = TopicNames()
    for spec, entry in [(transactions_spec(topics), catalogue.RAW_TRANSACTIONS), (labels_spec(topics), catalogue.RAW_LABELS),
                        (quarantine_spec(topics, "labels"), catalogue.QUARANTINED_LABELS)]:
        assert (spec.name, spec.zone, spec.dataset, spec.schema, spec.dedupe_columns) == (
            entry.asset_key, entry.zone, entry.name, entry.schema, entry.dedupe_keys)
    for name, suite in DATASETS.items():
        assert suite.target is catalogue.DATASETS[name]


def test_one_maturity_rule() -> None:
    day = date(2026, 1, 5)
    assert catalogue.matured_at(day, 7) == datetime(2026, 1, 13, tzinfo=timezone.utc)
    assert catalogue.is_matured(day, 7, datetime(2026, 1, 13, tzinfo=timezone.utc))
    assert not catalogue.is_matured(day, 7, datetime(2026, 1, 12, 23, 59, tzinfo=timezone.utc))
    assert catalogue.last_matured_day(7, datetime(2026, 1, 13, 5, tzinfo=timezone.utc)) == day
    assert catalogue.split_matured([date(2026, 1, 6), day], 7, datetime(2026, 1, 13, tzinfo=timezone.utc)) == ([day], [date(2026, 1, 6)])
    assert catalogue.label_days(day, 7) == [date(2026, 1, d) for d in range(5, 13)]


def test_analyst_verdicts_are_final_before_maturity_other_labels_only_after() -> None:
    import pandas as pd

    at = datetime(2026, 1, 13, tzinfo=timezone.utc)  # 2026-01-05 has matured, 2026-01-10 has not
    rows = pd.DataFrame({
        "event_date": [date(2026, 1, 5), date(2026, 1, 10), date(2026, 1, 10), date(2026, 1, 10), date(2026, 1, 10), date(2026, 1, 10)],
        "label_type": [None, "analyst_confirmed", "analyst_legitimate", "analyst_confirmed", "chargeback", None],
        "label_known_at": pd.to_datetime([None, "2026-01-10 15:00", "2026-01-11 00:00", "2026-01-13 00:00", "2026-01-12 00:00", None], utc=True),
    })
    final = catalogue.label_is_final(rows["event_date"], rows["label_type"], rows["label_known_at"], 7, at)
    # matured; verdicts known before the reference; a verdict not known yet; a chargeback (waits for maturity); no label
    assert final.tolist() == [True, True, True, False, False, False]


def test_scored_zone_schema_carries_the_model_features() -> None:
    from fraud_platform.domain.features import FEATURE_COLUMNS

    names = catalogue.SCORED_TRANSACTIONS.schema.names
    assert set(FEATURE_COLUMNS) <= set(names) and {"score", "decision", "model_version"} <= set(names)


def test_champion_model_depends_on_what_it_reads() -> None:
    """champion_model reads the matrix's held-out rows and its two upstream outputs; the scorer's
    features come from the online store, so it no longer depends on the batch feature state."""
    from fraud_platform.defs.ml.assets import champion_model

    assert {key.to_user_string() for key in champion_model.asset_deps[champion_model.key]} == {
        "transaction_features", "fraud_model", "model_evaluation"}


def test_transaction_features_depends_on_every_dataset_it_reads() -> None:
    """The matrix reads the sandbox, and for verdict rows the later processed days and their raw
    labels: all three are upstream in the lineage, so a stale input shows on the asset graph."""
    from fraud_platform.defs.features.assets import transaction_features

    assert {key.to_user_string() for key in transaction_features.asset_deps[transaction_features.key]} == {
        catalogue.SANDBOX_TRANSACTIONS.asset_key, catalogue.PROCESSED_TRANSACTIONS.asset_key, catalogue.RAW_LABELS.asset_key}
