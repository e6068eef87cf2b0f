"""The ingestion assets as Dagster runs them: metadata, idempotent re-materialisation, checks."""

import json
import os
import subprocess
import sys

import dagster as dg
import pytest

from fraud_platform.defs.ingestion import defs as ingestion_defs
from fraud_platform.defs.ingestion.assets import quarantined_transactions, raw_labels, raw_transactions
from fraud_platform.defs.resources import KafkaResource, LakeResource
from fraud_platform.infra.publish import RateLimitedProducer


def _tx(i: int, day: str) -> bytes:
    return json.dumps({
        "transaction_id": f"tx-asset-{i:06d}", "event_time": f"{day}T12:00:00Z", "customer_id": "C1",
        "card_token": "tok_0123456789abcdef", "terminal_id": "T1", "amount": 5.0 + i, "currency": "EUR",
        "merchant_category": "5411", "channel": "card_present", "country": "FR",
    }).encode()


def test_materialising_a_partition_reports_it_and_is_idempotent(kafka_settings, lake_root) -> None:
    producer = RateLimitedProducer(kafka_settings)
    producer.send(kafka_settings.topics.transactions, [(None, _tx(i, "2026-01-05")) for i in range(30)])
    producer.send(kafka_settings.topics.transactions, [(None, _tx(100 + i, "2026-01-06")) for i in range(20)] + [(None, b"oops")])
    producer.close()
    resources = {
        "lake": LakeResource(root=str(lake_root)),
        "kafka": KafkaResource(bootstrap_servers=kafka_settings.bootstrap_servers or kafka_settings.resolved_bootstrap(), topics=kafka_settings.topics.model_dump()),
    }
    instance = dg.DagsterInstance.ephemeral()
    first = dg.materialize([raw_transactions], partition_key="2026-01-05", resources=resources, instance=instance)
    assert first.success
    by_partition = {e.partition: e.materialization for e in first.get_asset_materialization_events()}
    assert set(by_partition) == {"2026-01-05", "2026-01-06"}
    metadata = by_partition["2026-01-05"].metadata
    assert metadata["dagster/row_count"].value == 30
    assert metadata["landed_this_run"].value == 50
    assert metadata["dead_lettered_this_run"].value == 1
    assert metadata["rejections_by_rule"].value == {"malformed_json": 1}
    assert "tx-asset-" in metadata["preview"].value and "card_present" in metadata["preview"].value
    # The other date landed in the same run is recorded as its own partition materialization.
    assert by_partition["2026-01-06"].metadata["dagster/row_count"].value == 20

    second = dg.materialize([raw_transactions], partition_key="2026-01-05", resources=resources, instance=instance)
    [again] = second.asset_materializations_for_node("raw_transactions")
    assert again.metadata["dagster/row_count"].value == 30
    assert again.metadata["consumed_this_run"].value == 0

    quarantine = dg.materialize([quarantined_transactions], resources=resources, instance=instance)
    [q] = quarantine.asset_materializations_for_node("quarantined_transactions")
    assert q.metadata["landed_this_run"].value == 1

    check_defs = [c for c in ingestion_defs.asset_checks if "raw_transactions" in str(list(c.check_keys))]
    checked = dg.materialize([raw_transactions, *check_defs], partition_key="2026-01-06", resources=resources, instance=instance)
    [evaluation] = checked.get_asset_check_evaluations()
    assert evaluation.passed and evaluation.metadata["consumed"].value == 51
    assert evaluation.metadata["rows_in_lake"].value == 50

    # A landed file disappears (operator error, lifecycle rule): the counts no longer reconcile.
    [lost] = LakeResource(root=str(lake_root)).store().parquet_keys("raw", "transactions", "2026-01-06")
    os.remove(os.path.join(lake_root, lost))
    broken = dg.materialize([raw_transactions, *check_defs], partition_key="2026-01-06", resources=resources, instance=instance)
    [evaluation] = broken.get_asset_check_evaluations()
    assert not evaluation.passed
    assert f"landed file {lost} is missing" in evaluation.description
    assert "30 rows in the lake + 1 dead-lettered != offset span 51" in evaluation.description


def test_assets_carry_group_owners_and_descriptions() -> None:
    for asset in (raw_transactions, raw_labels, quarantined_transactions):
        spec = next(iter(asset.specs))
        assert spec.group_name == "ingestion"
        assert spec.owners and spec.description


def test_dagster_definitions_validate() -> None:
    result = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "dagster"), "definitions", "validate", "-m", "fraud_platform.definitions"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "All code locations passed validation" in result.stdout + result.stderr
