"""One configuration path: the Dagster resources are the typed settings, read from env in one place."""

from __future__ import annotations

import re
from pathlib import Path

from fraud_platform.defs.resources import build_resources
from fraud_platform.settings import LakeProcessingSettings, LakeSettings, MonitoringSettings, PlatformSettings, SparkSettings

DEFS = Path(__file__).resolve().parents[2] / "fraud_platform" / "defs"


def test_resources_are_the_typed_settings(monkeypatch) -> None:
    monkeypatch.setenv("FRAUD_LABEL_MATURITY_DAYS", "3")
    monkeypatch.setenv("FRAUD_SPARK_MASTER", "local[1]")
    monkeypatch.setenv("FRAUD_DRIFT_PSI_THRESHOLD", "0.4")
    resources = build_resources(PlatformSettings.from_env())
    for key, settings_class in [("lake", LakeSettings), ("spark", SparkSettings), ("lake_processing", LakeProcessingSettings),
                                ("monitoring", MonitoringSettings)]:
        assert isinstance(resources[key], settings_class), key
    assert resources["lake_processing"].label_maturity_days == 3
    assert resources["spark"].master == "local[1]"
    assert resources["monitoring"].psi_threshold == 0.4
    # One setting, one default: the maturity window lives in LakeProcessingSettings only.
    assert "label_maturity_days" not in MonitoringSettings.model_fields


def test_dagster_wiring_reads_no_environment_variables() -> None:
    offenders = [f"{p.relative_to(DEFS)}:{n}" for p in DEFS.rglob("*.py")
                 for n, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"os\.environ\.get|os\.getenv", line)]
    assert offenders == []
