"""Sensors evaluated against real (SQLite) instance storage."""

from datetime import date, datetime, timedelta, timezone

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from fraud_platform.defs.ingestion.sensors import lake_on_new_raw_data
from fraud_platform.defs.monitoring.assets import feature_drift_report, live_model_performance
from fraud_platform.defs.monitoring.sensors import (
    DRIFTING_TAG,
    retrain_on_feature_drift,
    retrain_on_live_performance_decay,
)
from fraud_platform.defs.resources import LakeProcessingResource, LakeResource, MlflowResource, MonitoringResource
from fraud_platform.domain.features import DEFAULT_CONFIG
from fraud_platform.infra.lake import LocalLakeStore

FEATURES = DEFAULT_CONFIG.feature_columns()


@pytest.fixture()
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


def _land(instance: dg.DagsterInstance, key: str, partition: str) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=partition))


def _defs():
    from fraud_platform.definitions import defs

    return defs


def _land_labels(store: LocalLakeStore, day: str, known_at: str) -> None:
    from fraud_platform_tests.lake.fixtures import label, write_raw

    write_raw(store, "labels", date.fromisoformat(day), [label("tx000001", known_at)])


def _lake_requests(instance, store):
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    from fraud_platform.defs.resources import LakeProcessingResource

    context = dg.build_sensor_context(instance=instance, resources={
        "lake": LakeResource(root=str(store.root)), "lake_processing": LakeProcessingResource(label_maturity_days=7)})
    result = lake_on_new_raw_data(context)
    if isinstance(result, dg.SkipReason):
        return {}
    return {
        tuple(sorted(k.to_user_string() for k in r.asset_selection)): (r.tags[ASSET_PARTITION_RANGE_START_TAG], r.tags[ASSET_PARTITION_RANGE_END_TAG])
        for r in result
    }


def test_backlog_becomes_one_range_run_and_immature_days_wait_for_maturity(instance, tmp_path) -> None:
    store = LocalLakeStore(tmp_path / "lake")
    days = [f"2026-01-{d}" for d in range(10, 21)]
    for day in days:
        _land(instance, "raw_transactions", day)
        _land(instance, "raw_labels", day)
    _land_labels(store, "2026-01-20", "2026-01-20T12:00:00")  # labels watermark: days <= 01-12 matured

    both, processed_only = ("processed_transactions", "sandbox_transactions"), ("processed_transactions",)
    # 11 new days: two single-run ranges, never one run per day, and no sandbox for immature days.
    assert _lake_requests(instance, store) == {both: ("2026-01-10", "2026-01-12"), processed_only: ("2026-01-13", "2026-01-20")}

    for day in days:
        _land(instance, "processed_transactions", day)
    for day in days[:3]:
        _land(instance, "sandbox_transactions", day)
    assert _lake_requests(instance, store) == {}  # everything built: nothing requested again

    # A day's labels landing makes 01-13 mature (picked up by itself) and touch the processed labels of 01-14..01-20.
    _land(instance, "raw_labels", "2026-01-21")
    _land_labels(store, "2026-01-21", "2026-01-21T10:00:00")
    assert _lake_requests(instance, store) == {both: ("2026-01-13", "2026-01-13"), processed_only: ("2026-01-14", "2026-01-20")}


def _write(store: LocalLakeStore, zone: str, dataset: str, day: str, frame: pd.DataFrame) -> None:
    store.write_parquet(f"{zone}/{dataset}/date={day}/part-0.parquet", pa.Table.from_pandas(frame, preserve_index=False))


def _feature_frame(rng: np.random.Generator, n: int, amount_mean: float) -> pd.DataFrame:
    frame = pd.DataFrame({name: rng.normal(1.0, 0.3, n) for name in FEATURES})
    frame["amount_eur"] = rng.gamma(2.0, amount_mean / 2.0, n)
    frame["hour"] = rng.integers(0, 24, n)
    frame["event_time"] = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 86_400, n), unit="s")
    return frame


def _mlflow(root) -> MlflowResource:
    return MlflowResource(tracking_uri=f"sqlite:///{root}/mlflow.db", artifact_root=(root / "artifacts").as_uri())


def _materialize(instance, asset, lake_root) -> dg.ExecuteInProcessResult:
    resources = {
        "lake": LakeResource(root=str(lake_root)),
        "mlflow": _mlflow(lake_root.parent),
        "monitoring": MonitoringResource(psi_threshold=0.25, min_live_ap=0.5),
        "lake_processing": LakeProcessingResource(label_maturity_days=7),
    }
    return dg.materialize([asset], resources=resources, instance=instance)


def _evaluate_asset_sensor(sensor, instance):
    context = dg.build_sensor_context(instance=instance, resources={"monitoring": MonitoringResource(psi_threshold=0.25, min_live_ap=0.5)}, definitions=_defs())
    return sensor.evaluate_tick(context)


@pytest.mark.parametrize("recent_amount_mean, expect_retrain", [(200.0, True), (50.0, False)])
def test_drift_requests_retraining_naming_the_drifting_features(instance, lake_root, recent_amount_mean, expect_retrain) -> None:
    rng = np.random.default_rng(3)
    store = LocalLakeStore(lake_root)
    _write(store, "features", "transaction_features", "2026-01-01", _feature_frame(rng, 4000, 50.0))
    recent = _feature_frame(rng, 3000, recent_amount_mean).assign(transaction_id=[f"tx-{i:08d}" for i in range(3000)])
    _write(store, "scored", "transactions", "2026-02-01", recent)

    report = _materialize(instance, feature_drift_report, lake_root)
    [materialization] = report.asset_materializations_for_node("feature_drift_report")
    assert materialization.metadata["recent_source"].value == "scored"
    assert "data:image/png;base64," in materialization.metadata["psi_plot"].value

    tick = _evaluate_asset_sensor(retrain_on_feature_drift, instance)
    if expect_retrain:
        [request] = tick.run_requests
        assert request.tags[DRIFTING_TAG] == "amount_eur"
        assert request.job_name in (None, "retrain_model")
    else:
        assert not tick.run_requests and "no drift" in tick.skip_message


@pytest.mark.parametrize("informative, expect_retrain", [(False, True), (True, False)])
def test_decayed_live_ap_requests_retraining(instance, lake_root, informative, expect_retrain) -> None:
    rng = np.random.default_rng(5)
    store = LocalLakeStore(lake_root)
    day = (datetime.now(timezone.utc) - timedelta(days=20)).date().isoformat()
    n = 2000
    is_fraud = rng.random(n) < 0.05
    score = np.where(is_fraud, rng.uniform(0.6, 1.0, n), rng.uniform(0.0, 0.5, n)) if informative else rng.random(n)
    ids = [f"tx-live-{i:06d}" for i in range(n)]
    # Two versions scored the day; "10" is the newer one although "9" sorts after it as a string.
    versions = np.where(np.arange(n) % 2 == 0, "9", "10")
    scored = pd.DataFrame({"transaction_id": ids, "score": score, "decision": np.where(score > 0.55, "review", "approve"), "model_version": versions})
    _write(store, "scored", "transactions", day, scored)
    labels = pd.DataFrame({"transaction_id": [i for i, f in zip(ids, is_fraud) if f], "is_fraud": True,
                           "known_at": pd.Timestamp.now(tz="UTC")})  # labels watermark: the day has matured
    _write(store, "raw", "labels", day, labels)

    result = _materialize(instance, live_model_performance, lake_root)
    [materialization] = result.asset_materializations_for_node("live_model_performance")
    live_ap = materialization.metadata["live_ap"].value
    assert (live_ap < 0.5) == expect_retrain
    assert materialization.metadata["model_version"].value == "10"

    tick = _evaluate_asset_sensor(retrain_on_live_performance_decay, instance)
    if expect_retrain:
        [request] = tick.run_requests
        assert request.tags["fraud_platform/retrain_trigger"] == "live_performance_decay"
        assert request.tags["fraud_platform/model_version"] == "10"
    else:
        assert not tick.run_requests


def test_a_malformed_report_fails_the_tick_instead_of_skipping(instance) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="feature_drift_report", metadata={"unrelated": 1}))
    with pytest.raises(Exception, match="lacks metadata 'max_psi'"):
        _evaluate_asset_sensor(retrain_on_feature_drift, instance)


def test_unpartitioned_followers_run_when_a_daily_upstream_updates(instance) -> None:
    """Quarantine and dbt marts sit below daily assets whose newest partition is always missing;
    they must still follow an upstream update (plain eager() never would)."""
    defs = _defs()
    followers = [dg.AssetKey("quarantined_transactions"), dg.AssetKey("fct_transactions")]
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=dg.AssetSelection.all())
    _land(instance, "raw_transactions", "2026-01-10")
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="processed_transactions", partition="2026-01-10"))
    second = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=dg.AssetSelection.all(), cursor=first.cursor
    )
    assert all(second.get_num_requested(key) == 1 for key in followers)
    third = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=dg.AssetSelection.all(), cursor=second.cursor
    )
    assert third.total_requested == 0  # nothing new upstream: nothing runs again


def _register_champion(root) -> object:
    """A real (small) model behind the registry's champion alias, as champion_model publishes it."""
    import json

    import mlflow
    from sklearn.linear_model import LogisticRegression

    from fraud_platform.ml import registry

    target = _mlflow(root)
    mlflow.set_tracking_uri(target.tracking_uri)
    mlflow.set_registry_uri(target.tracking_uri)
    rng = np.random.default_rng(0)
    X = _feature_frame(rng, 2000, 50.0)
    y = (X["amount_eur"] > X["amount_eur"].quantile(0.95)).astype(int)
    model = LogisticRegression(max_iter=1000).fit(X[FEATURES], y)
    experiment = mlflow.set_experiment("drift-test")
    with mlflow.start_run(experiment_id=experiment.experiment_id):
        info = mlflow.sklearn.log_model(model, name="model", registered_model_name=target.model_name, serialization_format="cloudpickle")
    client = target.client()
    version = info.registered_model_version
    client.set_model_version_tag(target.model_name, version, registry.TAG_FEATURES, json.dumps(FEATURES))
    client.set_registered_model_alias(target.model_name, "champion", version)
    return model


def test_score_distribution_drift_is_reported_and_triggers_retraining(instance, lake_root) -> None:
    model = _register_champion(lake_root.parent)
    rng = np.random.default_rng(11)
    store = LocalLakeStore(lake_root)
    _write(store, "features", "transaction_features", "2026-01-01", _feature_frame(rng, 4000, 50.0))
    recent = _feature_frame(rng, 3000, 50.0)  # same features as training...
    recent["score"] = np.clip(model.predict_proba(recent[FEATURES])[:, 1] + 0.4, 0, 1)  # ...but shifted scores
    _write(store, "scored", "transactions", "2026-02-01", recent.assign(transaction_id=[f"tx-{i:08d}" for i in range(3000)]))

    report = _materialize(instance, feature_drift_report, lake_root)
    [materialization] = report.asset_materializations_for_node("feature_drift_report")
    score = materialization.metadata["score_drift"].value
    assert score["score_psi"] > 0.25 and score["recent_mean_score"] > score["reference_mean_score"]
    assert materialization.metadata["drifting_features"].value == ["score"]

    [request] = _evaluate_asset_sensor(retrain_on_feature_drift, instance).run_requests
    assert request.tags[DRIFTING_TAG] == "score"


def test_drift_on_unchanged_training_data_requests_no_retrain(instance, lake_root) -> None:
    rng = np.random.default_rng(3)
    store = LocalLakeStore(lake_root)
    _write(store, "features", "transaction_features", "2026-01-01", _feature_frame(rng, 4000, 50.0))
    _write(store, "scored", "transactions", "2026-02-01", _feature_frame(rng, 3000, 200.0).assign(transaction_id=[f"tx-{i:08d}" for i in range(3000)]))
    _land(instance, "sandbox_transactions", "2026-01-01")
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="fraud_model"))  # trained after the last sandbox change
    _materialize(instance, feature_drift_report, lake_root)

    tick = _evaluate_asset_sensor(retrain_on_feature_drift, instance)
    assert not tick.run_requests and "training data unchanged" in tick.skip_message

    _land(instance, "sandbox_transactions", "2026-01-02")  # new matured data: now a retrain can learn something
    _materialize(instance, feature_drift_report, lake_root)
    [request] = _evaluate_asset_sensor(retrain_on_feature_drift, instance).run_requests
    assert request.tags[DRIFTING_TAG] == "amount_eur"


def test_weekly_retrain_skips_when_training_data_is_unchanged(instance) -> None:
    from fraud_platform.defs.jobs import weekly_retrain_schedule

    def tick():
        return weekly_retrain_schedule.evaluate_tick(dg.build_schedule_context(instance=instance))

    assert tick().run_requests  # never trained: retrain
    _land(instance, "sandbox_transactions", "2026-01-01")
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="fraud_model"))
    skipped = tick()
    assert not skipped.run_requests and "unchanged" in skipped.skip_message
    _land(instance, "sandbox_transactions", "2026-01-02")
    assert tick().run_requests
