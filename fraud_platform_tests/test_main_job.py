"""The README's main job, end to end on the embedded defaults: broker → simulate → every asset."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from mlflow import MlflowClient

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_run_local_materialises_every_asset(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRAUD_", "MLFLOW_"))}
    env.update(FRAUD_PLATFORM_HOME=str(home), DAGSTER_HOME=str(home / "dagster"))
    cli = str(Path(sys.executable).parent / "fraud-platform")
    try:
        result = subprocess.run(
            [cli, "run-local", "--days", "40", "--customers", "1000", "--terminals", "2000"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=1800,
        )
    finally:
        subprocess.run([cli, "broker", "stop"], cwd=REPO, env=env, capture_output=True, timeout=60)
        subprocess.run([cli, "online-store", "stop"], cwd=REPO, env=env, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-6000:]
    assert "dagster dev" in result.stdout

    from fraud_platform.definitions import defs

    graph = defs.resolve_asset_graph()
    expected = {k for k in graph.get_all_asset_keys() if graph.get(k).is_materializable}
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        missing = sorted(k.to_user_string() for k in expected if instance.get_latest_materialization_event(k) is None)
    assert missing == []

    lake = home / "lake"
    for zone in ("raw/transactions", "raw/labels", "processed/transactions", "sandbox/transactions", "quarantine/transactions"):
        assert any((lake / zone).rglob("*.parquet")), zone
    with duckdb.connect(str(home / "warehouse" / "fraud.duckdb"), read_only=True) as con:
        tables = {row[0] for row in con.execute("select table_name from information_schema.tables").fetchall()}
    assert {"fct_transactions", "mart_daily_fraud_kpis"} <= tables

    registry = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=registry, registry_uri=registry)
    champion = client.get_model_version_by_alias("fraud_detector", "champion")
    assert champion.version
