"""When a retrain can learn something: shared by the retrain sensors and the weekly schedule, so
none of them re-fits a model on exactly the rows it was trained on."""

import dagster as dg

from fraud_platform.domain.catalogue import SANDBOX_TRANSACTIONS


def _newest_storage_id(instance: dg.DagsterInstance, asset: str) -> int:
    records = instance.fetch_materializations(dg.AssetKey(asset), limit=1).records
    return records[0].storage_id if records else 0


def training_data_unchanged(instance: dg.DagsterInstance) -> str | None:
    """Why retraining would be pointless: no sandbox partition was (re)built since the last model
    was trained, so a retrain would fit the same rows again. None when there is something new."""
    trained = _newest_storage_id(instance, "fraud_model")
    if trained and _newest_storage_id(instance, SANDBOX_TRANSACTIONS.asset_key) < trained:
        return "training data unchanged since fraud_model was last trained"
    return None
