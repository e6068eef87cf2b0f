"""The one Dagster code location: every domain's definitions plus the environment's resources."""

import dagster as dg

from fraud_platform.defs import features, ingestion, lake, ml, monitoring, warehouse
from fraud_platform.defs.freshness import apply_freshness
from fraud_platform.defs.resources import build_resources

defs = dg.Definitions.merge(
    ingestion.defs,
    lake.defs,
    warehouse.defs,
    features.defs,
    ml.defs,
    monitoring.defs,
    dg.Definitions(resources=build_resources()),
).map_asset_specs(func=apply_freshness)
