"""A code location with only the warehouse domain and the platform's resources, for tests that run
`dagster asset materialize` in subprocesses without depending on the other domains' state."""

import dagster as dg

from fraud_platform.defs import warehouse
from fraud_platform.defs.resources import build_resources

defs = dg.Definitions.merge(warehouse.defs, dg.Definitions(resources=build_resources()))
