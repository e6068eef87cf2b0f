"""The one Dagster code location: every domain's definitions plus the environment's resources.

Cross-cutting policies are applied here, each defined in one place: freshness policies
(``defs/freshness.py``) and declarative automation conditions (``defs/jobs.py``).
"""

import dagster as dg

from fraud_platform.defs import eda, features, ingestion, jobs, lake, ml, monitoring, warehouse
from fraud_platform.defs.freshness import apply_freshness
from fraud_platform.defs.jobs import apply_automation
from fraud_platform.defs.resources import build_executor, build_resources
from fraud_platform.security import secure_process_start

secure_process_start()  # the code location's processes write the lake: private modes, key required


def _apply_policies(spec: dg.AssetSpec) -> dg.AssetSpec:
    return apply_automation(apply_freshness(spec))


defs = dg.Definitions.merge(
    ingestion.defs,
    lake.defs,
    warehouse.defs,
    features.defs,
    ml.defs,
    eda.defs,
    monitoring.defs,
    jobs.defs,
    dg.Definitions(resources=build_resources(), executor=build_executor()),
).permissive_map_resolved_asset_specs(func=_apply_policies, selection=None)
