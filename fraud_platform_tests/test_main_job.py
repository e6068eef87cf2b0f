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
    # the decision API joined the main job: a real server decided a new transaction, with reasons
    decided = [line for line in result.stdout.splitlines() if line.startswith("decision API: run-local-")]
    assert len(decided) == 1 and " -> " in decided[0] and "reasons: " in decided[0], result.stdout[-3000:]

    from fraud_platform.cli import ON_DEMAND
    from fraud_platform.definitions import defs

    graph = defs.resolve_asset_graph()
    expected = {k for k in graph.get_all_asset_keys() if graph.get(k).is_materializable
                and k.to_user_string() not in ON_DEMAND}  # on-demand analyses (the backtest) have their own command
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

    _daemon_on_bootstrapped_home_launches_only_what_can_succeed(home, env)


def _daemon_on_bootstrapped_home_launches_only_what_can_succeed(home: Path, env: dict[str, str], seconds: int = 150) -> None:
    """The real ``dagster-daemon`` on the home run-local just built (automation running by default):
    nothing changed since, so it must not fan out lake runs per partition, must not retrain, and
    whatever it launches must succeed. (A 10-minute run is measured by hand; README.md, 'Automation'.)"""
    import time

    daemon = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(seconds)
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        launched = [r for r in instance.get_runs() if r.tags.get("dagster/sensor_name") or r.tags.get("dagster/schedule_name")
                    or r.tags.get("dagster/from_automation_condition")]
        finished = [r for r in launched if r.status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)]
        failed = [r.job_name for r in finished if r.status == dg.DagsterRunStatus.FAILURE]
    assert failed == [], failed
    assert not [r for r in launched if r.job_name == "retrain_model"], [r.tags for r in launched]
    assert len([r for r in launched if r.job_name == "build_lake_daily"]) <= 2, [r.tags for r in launched]
