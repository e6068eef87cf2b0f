"""Feature assets: the batch feature state (``customer_features``, ``terminal_features``), its
materialisation into the online store (``online_feature_snapshot``) and the training matrix
(``transaction_features``), all computed by ``fraud_platform.domain.features`` from the sandbox zone,
so training, the stream and the API share one implementation."""

from datetime import date, datetime, time, timedelta, timezone

import dagster as dg
import pandas as pd
import pyarrow as pa

from fraud_platform.defs.owners import ML_ENGINEERING
from fraud_platform.defs.resources import LakeProcessingResource, LakeResource, OnlineStoreResource
from fraud_platform.domain.catalogue import (
    ONLINE_FEATURES_PREFIX,
    ONLINE_SNAPSHOT_POINTER,
    PROCESSED_TRANSACTIONS,
    RAW_LABELS,
    SANDBOX_TRANSACTIONS,
    TRANSACTION_FEATURES,
    VERDICT_FEATURES,
    first_verdicts,
    label_is_final,
)
from fraud_platform.domain.features import FEATURE_COLUMNS, FeatureSnapshot, compute_batch_features
from fraud_platform.infra.lake import LakeStore
from fraud_platform.quality.gate import gated_partitions
from fraud_platform.reports import markdown_table

ONLINE_PREFIX = ONLINE_FEATURES_PREFIX
LATEST_SNAPSHOT_KEY = ONLINE_SNAPSHOT_POINTER
# Columns the training matrix carries besides the features: ids, time, label and its known time.
MATRIX_KEYS = ["transaction_id", "event_time", "event_date", "customer_key", "card_key", "terminal_id",
               "is_fraud", "label_known_at", "fraud_scenario"]


def read_sandbox(store: LakeStore, log=None) -> tuple[pd.DataFrame, list[str], dict[str, str]]:
    """Every sandbox partition whose blocking quality check passed (features need the full history),
    the dates read, and the partitions left out with why (logged when ``log`` is given)."""
    gate = gated_partitions(store, SANDBOX_TRANSACTIONS)
    if gate.excluded and log is not None:
        log.warning(f"left out {len(gate.excluded)} sandbox partitions: {gate.excluded}")
    if not gate.passed:
        raise dg.Failure(
            "no sandbox partition has passed its blocking quality check: materialise sandbox_transactions "
            f"(its gx_suite check runs with it); left out: {gate.excluded}"
        )
    frame = store.read_days(SANDBOX_TRANSACTIONS, gate.passed).to_pandas()
    return frame.sort_values("event_time", kind="stable").reset_index(drop=True), gate.passed, gate.excluded


def _excluded_metadata(excluded: dict[str, str]) -> dict:
    return {"partitions_excluded": len(excluded), "excluded_partitions": dg.MetadataValue.json(excluded)}


def snapshot_prefix(version: str) -> str:
    return f"{ONLINE_PREFIX}/version={version}"


def _publish_snapshot(store: LakeStore, log) -> tuple[FeatureSnapshot, dict, dict[str, str]]:
    """Build the snapshot as of the end of the last sandbox day and write all its tables."""
    frame, days, excluded = read_sandbox(store, log)
    as_of = datetime.combine(pd.Timestamp(days[-1]).date() + timedelta(days=1), time(), timezone.utc)
    snapshot = FeatureSnapshot.build(frame, as_of=as_of)
    prefix = snapshot_prefix(snapshot.version)
    manifest = snapshot.write(store, prefix)
    manifest = {**manifest, "key": prefix, "uri": store.uri(prefix), "source_partitions": [days[0], days[-1]]}
    store.write_json(LATEST_SNAPSHOT_KEY, manifest)
    return snapshot, manifest, excluded


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
    group_name="features", owners=[ML_ENGINEERING], kinds={"pandas", "parquet"}, deps=[SANDBOX_TRANSACTIONS.asset_key],
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
def feature_snapshot(context: dg.AssetExecutionContext, lake: LakeResource):
    """Both halves of one snapshot: built once from the sandbox, written once under one version."""
    snapshot, manifest, excluded = _publish_snapshot(lake.store(), context.log)
    per_customer = snapshot.customer_activity.groupby("customer_key")["n"].sum()
    yield dg.MaterializeResult(asset_key="customer_features", metadata={
        **_snapshot_metadata(manifest, {t: getattr(snapshot, t) for t in FeatureSnapshot.CUSTOMER_TABLES}),
        **_excluded_metadata(excluded),
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
    table = store.read_days(SANDBOX_TRANSACTIONS, store.partition_dates(SANDBOX_TRANSACTIONS)[-days:])
    return table.to_pandas() if table is not None else pd.DataFrame()


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
    keys = store.parquet_keys(TRANSACTION_FEATURES)
    if not keys:
        raise dg.Failure("no training matrix: materialise transaction_features first")
    return store.read_parquet(keys).to_pandas()


def read_verdict_rows(store: LakeStore) -> pd.DataFrame:
    """The verdict-labelled rows of immature days (``VERDICT_FEATURES``; empty frame when none)."""
    keys = store.parquet_keys(VERDICT_FEATURES)
    return store.read_parquet(keys).to_pandas() if keys else pd.DataFrame(columns=[*MATRIX_KEYS, *FEATURE_COLUMNS])


def read_immature_history(store: LakeStore, lake_processing: LakeProcessingResource, after: str,
                          log=None) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Processed days after the last sandbox day ``after`` (blocking check passed): all their rows as
    feature history, and the rows of the immature ones whose label ``catalogue.label_is_final``
    accepts at the maturity reference - an analyst verdict known by then - with the label the
    processed zone folded (a later chargeback wins). Unlabelled immature rows are history only."""
    policy = lake_processing.policy()
    gate = gated_partitions(store, PROCESSED_TRANSACTIONS)
    later = [d for d in gate.passed if d > after]
    empty = pd.DataFrame(columns=PROCESSED_TRANSACTIONS.schema.names)
    reference = policy.reference_time(store)
    if not later or reference is None:
        return empty, empty, []
    matured, immature = policy.split_matured([date.fromisoformat(d) for d in later], reference)
    if matured and log is not None:
        log.warning(f"processed days matured but not in the sandbox yet (history only): {[d.isoformat() for d in matured]}")
    history = store.read_days(PROCESSED_TRANSACTIONS, later).to_pandas().sort_values("event_time", kind="stable")
    days = pd.to_datetime(history["event_date"]).dt.date
    rows = history[days.isin(set(immature))]
    if rows.empty:
        return history, empty, []
    label_days = [d for d in store.partition_dates(RAW_LABELS) if min(immature).isoformat() <= d <= reference.date().isoformat()]
    table = store.read_days(RAW_LABELS, label_days, columns=["transaction_id", "label_type", "known_at"])
    labels = table.to_pandas() if table is not None else pd.DataFrame(columns=["transaction_id", "label_type", "known_at"])
    final = label_is_final(rows["event_date"], rows["label_type"], rows["label_known_at"], policy.maturity_days,
                           reference, verdict_known_at=first_verdicts(rows, labels))
    trainable = rows[final & rows["is_fraud"].notna().to_numpy()]  # a verdict not folded in yet waits for the rebuild
    return history, trainable, sorted(d.isoformat() for d in immature)


@dg.asset(
    # Reads the sandbox, and the processed days after it with their raw labels (verdict rows).
    **{**_COMMON, "deps": [SANDBOX_TRANSACTIONS.asset_key, PROCESSED_TRANSACTIONS.asset_key, RAW_LABELS.asset_key]},
    description="Training matrix: point-in-time features for every sandbox transaction plus its label "
                "(features/transaction_features/date=D/), and beside it the rows of immature processed days "
                "that carry an analyst verdict, with their label (features/verdict_features/date=D/): "
                "catalogue.label_is_final, so verdicts train the next model before their day matures.",
)
def transaction_features(context: dg.AssetExecutionContext, lake: LakeResource,
                         lake_processing: LakeProcessingResource) -> dg.MaterializeResult:
    store = lake.store()
    frame, days, excluded = read_sandbox(store, context.log)
    history, verdicts, immature_days = read_immature_history(store, lake_processing, days[-1], context.log)
    # One feature pass over sandbox + later processed rows: verdict rows get their full history;
    # the later rows cannot change the sandbox rows' point-in-time features.
    everything = pd.concat([frame, history.dropna(axis=1, how="all")], ignore_index=True) if len(history) else frame
    features = compute_batch_features(everything)
    features.index = everything["transaction_id"].to_numpy()
    matrix = pd.concat([frame[MATRIX_KEYS], features[FEATURE_COLUMNS].iloc[: len(frame)].reset_index(drop=True)], axis=1)
    verdict_matrix = verdicts[MATRIX_KEYS].assign(is_fraud=verdicts["is_fraud"].astype("int32")).reset_index(drop=True)
    verdict_matrix = pd.concat(
        [verdict_matrix, features.loc[verdict_matrix["transaction_id"], FEATURE_COLUMNS].reset_index(drop=True)], axis=1)
    for dataset, table in ((TRANSACTION_FEATURES, matrix), (VERDICT_FEATURES, verdict_matrix)):
        store.delete_prefix(dataset.prefix)
        for day, part in table.groupby("event_date"):
            store.write_parquet(f"{dataset.partition_prefix(pd.Timestamp(day).date())}/part-0.parquet",
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
        "verdict_rows": len(verdict_matrix),
        "verdict_frauds": int(verdict_matrix["is_fraud"].sum()),
        "immature_days": ", ".join(immature_days) or "none",
        **_excluded_metadata(excluded),
    })
