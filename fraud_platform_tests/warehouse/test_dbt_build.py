"""The dbt warehouse built through Dagster on a crafted lake: the build passes with every dbt test
as a passing asset check, the marts equal KPIs computed independently in pandas, and the KPI
mart's materialization carries the fraud-trend pictures."""

from __future__ import annotations

import base64
import re

import pandas as pd
import pytest

from fraud_platform.defs.warehouse import warehouse_dbt_assets
from fraud_platform.warehouse import read_relation
from fraud_platform_tests.warehouse import expected
from fraud_platform_tests.warehouse.conftest import materialization, materialize_warehouse, warehouse_settings

pytestmark = pytest.mark.slow

MODELS = {
    "stg_transactions", "stg_sandbox_transactions", "fct_transactions", "dim_customers", "dim_terminals",
    "mart_daily_fraud_kpis", "mart_terminal_risk", "mart_customer_risk",
}


@pytest.fixture(scope="module")
def build(crafted_lake, tmp_path_factory):
    lake_root, fixture = crafted_lake
    settings = warehouse_settings(lake_root, tmp_path_factory.mktemp("warehouse") / "fraud.duckdb")
    result = materialize_warehouse(settings)
    return result, settings, fixture


def mart(build, name: str) -> pd.DataFrame:
    _, settings, _ = build
    return read_relation(name, settings.warehouse)


def test_build_materializes_every_model_and_every_dbt_test_passes_as_an_asset_check(build):
    result, _, _ = build
    assert result.success
    materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert materialized == MODELS
    evaluations = result.get_asset_check_evaluations()
    assert {(e.asset_key, e.check_name) for e in evaluations} == {
        (key.asset_key, key.name) for key in warehouse_dbt_assets.check_keys
    }
    assert all(e.passed for e in evaluations)
    assert "unique_stg_transactions_transaction_id" in {e.check_name for e in evaluations}


def test_daily_kpis_equal_pandas_computation(build):
    _, _, fixture = build
    counts = ["transaction_count", "fraud_count", "matured_count"]
    floats = ["amount_eur", "fraud_amount_eur", "fraud_rate"]
    actual = expected.normalise(mart(build, "mart_daily_fraud_kpis"), expected.GRAIN, counts, floats)
    wanted = expected.normalise(expected.daily_kpis(fixture), expected.GRAIN, counts, floats)
    pd.testing.assert_frame_equal(actual, wanted, check_exact=False, rtol=1e-9)
    # The late chargeback known only to the sandbox counts as fraud.
    assert actual["fraud_count"].sum() == 8


@pytest.mark.parametrize("model, key", [("mart_terminal_risk", "terminal_id"), ("mart_customer_risk", "customer_key")])
def test_risk_marts_equal_pandas_computation(build, model, key):
    _, _, fixture = build
    counts = ["transaction_count", "fraud_count", "transaction_count_28d", "fraud_count_28d"]
    actual = expected.normalise(mart(build, model), [key], counts, texts=["risk_tier"])
    wanted = expected.normalise(expected.risk(fixture, key), [key], counts, texts=["risk_tier"])
    pd.testing.assert_frame_equal(actual, wanted)


def test_risk_tiers_follow_the_crafted_scenarios(build):
    terminals = mart(build, "mart_terminal_risk").set_index("terminal_id")
    customers = mart(build, "mart_customer_risk").set_index("customer_key")
    assert terminals.loc["T1", "risk_tier"] == "high"  # compromised on the newest day
    # T2's only fraud is older than the 28-day window: counted for life, not for the tier.
    assert (terminals.loc["T2", "fraud_count"], terminals.loc["T2", "fraud_count_28d"]) == (1, 0)
    assert terminals.loc["T2", "risk_tier"] == "low"
    assert customers.loc["C3", "risk_tier"] == "high"  # compromised card


def test_dimensions_hold_one_row_per_entity_with_their_most_frequent_attributes(build):
    _, _, fixture = build
    tx = pd.DataFrame(fixture.processed)
    terminals = mart(build, "dim_terminals").set_index("terminal_id")
    assert set(terminals.index) == set(tx["terminal_id"])
    for terminal, rows in tx.groupby("terminal_id"):
        counts = rows["country"].value_counts()
        top = sorted(counts[counts == counts.max()].index)[0]
        assert terminals.loc[terminal, "country"] == top
        assert terminals.loc[terminal, "transaction_count"] == len(rows)
    customers = mart(build, "dim_customers").set_index("customer_key")
    assert customers["card_count"].to_dict() == tx.groupby("customer_key")["card_key"].nunique().to_dict()


def test_kpi_mart_materialization_shows_trend_plots_and_table(build):
    result, _, fixture = build
    metadata = materialization(result, "mart_daily_fraud_kpis").metadata
    images = re.findall(r"!\[([a-z_]+)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", metadata["fraud_trends"].value)
    assert [alt for alt, _ in images] == ["daily_fraud_rate", "fraud_by_channel", "fraud_by_hour"]
    assert all(base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n") for _, data in images)
    daily_table = metadata["daily_kpis"].value.splitlines()
    assert daily_table[0].startswith("| event_date |")
    assert len(daily_table) == 2 + len({row["event_date"] for row in fixture.processed})
    assert metadata["kpi_preview"].value.startswith("| event_date | channel |")
