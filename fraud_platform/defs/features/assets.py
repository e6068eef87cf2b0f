"""Feature assets: the batch feature state (``customer_features``, ``terminal_features``), its
materialisation into the online store (``online_feature_snapshot``) and the training matrix
(``transaction_features``), all computed by ``fraud_platform.domain.features`` from the sandbox zone,
so training, the stream and the API share one implementation."""

from datetime import datetime, time, timedelta, timezone

import dagster as dg
import pandas as pd
import pyarrow as pa

from fraud_platform.defs.owners import ML_ENGINEERING
from fraud_platform.defs.resources import LakeResource, OnlineStoreResource
from fraud_platform.domain.features import FEATURE_COLUMNS, FeatureSnapshot, compute_batch_features
from fraud_platform.infra.lake import LakeStore
from fraud_platform.reports import markdown_table

SANDBOX_TRANSACTIONS = dg.AssetKey("sandbox_transactions")
ONLINE_PREFIX = "features/online"
LATEST_SNAPSHOT_KEY = f"{ONLINE_PREFIX}/_latest.json"
MATRIX_DATASET = "transaction_features"
# Columns the training matrix carries besides the features: ids, time, label and its known time.
MATRIX_KEYS = ["transaction_id", "event_time", "event_date", "customer_key", "card_key", "terminal_id",
               "is_fraud", "label_known_at"]


def read_sandbox(store: LakeStore) -> tuple[pd.DataFrame, list[str]]:
    """Every sandbox partition (features need the full history) and the partition dates read."""
    days = store.partition_dates("sandbox", "transactions")
    if not days:
        raise dg.Failure("the sandbox zone is empty: materialise sandbox_transactions first")
    keys = [k for day in days for k in store.parquet_keys("sandbox", "transactions", day)]
    frame = store.read_parquet(keys).to_pandas()
    return frame.sort_values("event_time", kind="stable").reset_index(drop=True), days


def snapshot_prefix(version: str) -> str:
    return f"{ONLINE_PREFIX}/version={version}"


def _publish_snapshot(store: LakeStore) -> tuple[FeatureSnapshot, dict]:
    """Build the snapshot as of the end of the last sandbox day and write all its tables."""
    frame, days = read_sandbox(store)
    as_of = datetime.combine(pd.Timestamp(days[-1]).date() + timedelta(days=1), time(), timezone.utc)
    snapshot = FeatureSnapshot.build(frame, as_of=as_of)
    prefix = snapshot_prefix(snapshot.version)
    manifest = snapshot.write(store, prefix)
    manifest = {**manifest, "key": prefix, "uri": store.uri(prefix), "source_partitions": [days[0], days[-1]]}
    store.write_json(LATEST_SNAPSHOT_KEY, manifest)
    return snapshot, manifest


def _snapshot_metadata(manifest: dict, tables: dict[str, pd.DataFrame]) -> dict:
    return {
        "snapshot_version": manifest["version"],
        "as_of": manifest["as_of"],
        "lake_uri": manifest["uri"],
        "source_partitions": " .. ".join(manifest["source_partitions"]),
        "dagster/row_count": int(sum(len(t) for t in tables.values())),
        **{f"rows_{name}": len(t) for name, t in tables.items()},
    }


_COMMON = dict(
    group_name="features", owners=[ML_ENGINEERING], kinds={"pandas", "parquet"}, deps=[SANDBOX_TRANSACTIONS],
)


@dg.multi_asset(
    name="feature_snapshot",
    specs=[
        dg.AssetSpec(
            "customer_features", **_COMMON,
            description="Online state per customer (daily spend buckets + open-day events, terminals seen) as of "
                        "the end of the sandbox; the streaming scorer's lookup snapshot (features/online/version=V).",
        ),
        dg.AssetSpec(
            "terminal_features", **_COMMON,
            description="Online state per terminal (daily transaction buckets, fraud labels by known time) as of "
                        "the end of the sandbox; with customer_features, the scorer's snapshot.",
        ),
    ],
)
def feature_snapshot(lake: LakeResource):
    """Both halves of one snapshot: built once from the sandbox, written once under one version."""
    snapshot, manifest = _publish_snapshot(lake.store())
    per_customer = snapshot.customer_activity.groupby("customer_key")["n"].sum()
    yield dg.MaterializeResult(asset_key="customer_features", metadata={
        **_snapshot_metadata(manifest, {t: getattr(snapshot, t) for t in FeatureSnapshot.CUSTOMER_TABLES}),
        "customers": int(per_customer.size),
        "tx_per_customer_in_state": dg.MetadataValue.md(markdown_table(per_customer.describe().to_frame("n").T)),
    })
    frauds = snapshot.terminal_frauds.groupby("terminal_id")["n"].sum().sort_values(ascending=False)
    yield dg.MaterializeResult(asset_key="terminal_features", metadata={
        **_snapshot_metadata(manifest, {t: getattr(snapshot, t) for t in FeatureSnapshot.TERMINAL_TABLES}),
        "terminals": int(snapshot.terminal_activity["terminal_id"].nunique()),
        "terminals_with_known_fraud": int(frauds.size),
        "top_fraud_terminals": dg.MetadataValue.md(markdown_table(frauds.head(10).rename("known_frauds").reset_index())),
    })


def read_recent_sandbox(store: LakeStore, days: int) -> pd.DataFrame:
    """The last ``days`` sandbox partitions (the transactions whose labels may still arrive)."""
    dates = store.partition_dates("sandbox", "transactions")[-days:]
    keys = [k for day in dates for k in store.parquet_keys("sandbox", "transactions", day)]
    return store.read_parquet(keys).to_pandas() if keys else pd.DataFrame()


@dg.asset(
    group_name="features", owners=[ML_ENGINEERING], kinds={"redis"},
    deps=["customer_features", "terminal_features"],
    description="The latest feature snapshot materialised into the online store (Redis): per-customer and "
                "per-terminal daily buckets, pair last-seen times and known frauds before its as-of, plus the "
                "transaction index of its recent days so late labels find their terminal. The streaming feature "
                "pipeline continues from its as-of; the scorer and the decision API read the store.",
)
def online_feature_snapshot(context: dg.AssetExecutionContext, lake: LakeResource,
                            online_store: OnlineStoreResource) -> dg.MaterializeResult:
    from fraud_platform.infra.online_store import OnlineStoreUnavailable

    store = lake.store()
    if not store.exists(LATEST_SNAPSHOT_KEY):
        raise dg.Failure("no feature snapshot in the lake: materialise customer_features/terminal_features first")
    latest = store.read_json(LATEST_SNAPSHOT_KEY)
    snapshot = FeatureSnapshot.read(store, latest["key"])
    try:
        online = online_store.store()
        index_days = -(-online.tx_index_ttl_seconds // 86_400)
        metadata = online.materialise(snapshot, transactions=read_recent_sandbox(store, index_days))
    except OnlineStoreUnavailable as error:
        raise dg.Failure(str(error)) from None
    entities = metadata["customers_written"] + metadata["terminals_written"]
    context.log.info(f"materialised snapshot {snapshot.version} into {online.description}: {entities} entities")
    return dg.MaterializeResult(metadata={
        **{k: v for k, v in metadata.items() if k != "as_of"},
        "as_of": dg.MetadataValue.timestamp(snapshot.as_of.to_pydatetime()),
        "entities_written": entities,
        "bytes_per_entity": round(metadata["bytes_added"] / entities, 1) if entities else 0.0,
        "store": online.description,
        "dagster/row_count": metadata["fields_written"],
    })


def read_matrix(store: LakeStore) -> pd.DataFrame:
    keys = store.parquet_keys("features", MATRIX_DATASET)
    if not keys:
        raise dg.Failure("no training matrix: materialise transaction_features first")
    return store.read_parquet(keys).to_pandas()


@dg.asset(
    **_COMMON,
    description="Training matrix: point-in-time features for every sandbox transaction plus its label "
                "(features/transaction_features/date=D/).",
)
def transaction_features(lake: LakeResource) -> dg.MaterializeResult:
    store = lake.store()
    frame, days = read_sandbox(store)
    features = compute_batch_features(frame)
    matrix = pd.concat([frame[MATRIX_KEYS], features[FEATURE_COLUMNS]], axis=1)
    store.delete_prefix(f"features/{MATRIX_DATASET}")
    for day, part in matrix.groupby("event_date"):
        store.write_parquet(f"features/{MATRIX_DATASET}/date={pd.Timestamp(day).date().isoformat()}/part-0.parquet",
                            pa.Table.from_pandas(part, preserve_index=False))
    stats = matrix[FEATURE_COLUMNS].describe().T[["mean", "std", "min", "max"]].reset_index(names="feature")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(matrix),
        "partitions": len(days),
        "first_partition": days[0],
        "last_partition": days[-1],
        "fraud_rate": float(matrix["is_fraud"].mean()),
        "n_features": len(FEATURE_COLUMNS),
        "feature_stats": dg.MetadataValue.md(markdown_table(stats, max_rows=len(stats))),
    })
