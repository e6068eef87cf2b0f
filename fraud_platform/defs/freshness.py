"""Freshness expectations for the data products, in one place so the SLOs are reviewed together.

Raw landing is continuous (time-window policies: stale if nothing landed for hours); processing and
the marts are daily builds (cron policies: expected by a deadline each morning, UTC). Applied to the
merged definitions in ``fraud_platform.definitions`` via ``Definitions.map_asset_specs``.
"""

from datetime import timedelta

import dagster as dg

_RAW = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=2), warn_window=timedelta(hours=1))
_LABELS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=26), warn_window=timedelta(hours=12))
_PROCESSED = dg.FreshnessPolicy.cron(deadline_cron="0 3 * * *", lower_bound_delta=timedelta(hours=3))
_SANDBOX = dg.FreshnessPolicy.cron(deadline_cron="0 4 * * *", lower_bound_delta=timedelta(hours=4))
_MARTS = dg.FreshnessPolicy.cron(deadline_cron="0 6 * * *", lower_bound_delta=timedelta(hours=6))

FRESHNESS_POLICIES: dict[dg.AssetKey, dg.FreshnessPolicy] = {
    dg.AssetKey("raw_transactions"): _RAW,
    dg.AssetKey("raw_labels"): _LABELS,
    dg.AssetKey("processed_transactions"): _PROCESSED,
    dg.AssetKey("sandbox_transactions"): _SANDBOX,
    **{
        dg.AssetKey(name): _MARTS
        for name in (
            "fct_transactions",
            "dim_customers",
            "dim_terminals",
            "mart_daily_fraud_kpis",
            "mart_terminal_risk",
            "mart_customer_risk",
        )
    },
}


def apply_freshness(spec: dg.AssetSpec) -> dg.AssetSpec:
    """The spec with its platform freshness policy (specs without one are returned unchanged)."""
    policy = FRESHNESS_POLICIES.get(spec.key)
    return spec.replace_attributes(freshness_policy=policy) if policy else spec
