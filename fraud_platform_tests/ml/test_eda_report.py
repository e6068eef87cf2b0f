"""The EDA notebook kept in the repo, executed by the ``eda_report`` asset on a small sandbox with
a real Jupyter kernel registered by the platform; its HTML and figures reach the materialisation."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import dagster as dg
import pytest

from fraud_platform.defs.eda.assets import eda_report
from fraud_platform.defs.features import transaction_features
from fraud_platform.defs.resources import LakeProcessingResource, LakeResource
from fraud_platform.infra.lake import LocalLakeStore
from fraud_platform.ml.datasets import simulated_sandbox_frame
from fraud_platform_tests.ml.conftest import small_simulation, write_sandbox

pytestmark = pytest.mark.slow


def test_eda_notebook_executes_and_its_html_is_attached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("FRAUD_PLATFORM_HOME", str(home))
    monkeypatch.delenv("JUPYTER_PATH", raising=False)
    store = LocalLakeStore(tmp_path / "lake")
    frame = simulated_sandbox_frame(small_simulation(days=10))
    write_sandbox(store, frame)

    result = dg.materialize([transaction_features, eda_report], resources={"lake": LakeResource(root=str(store.root)),
                                                                           "lake_processing": LakeProcessingResource()})
    assert result.success
    metadata = result.asset_materializations_for_node("eda_report")[0].metadata
    html = Path(metadata["html"].value)
    assert html.is_file() and html.stat().st_size > 10_000
    text = html.read_text()
    for section in ("Volume and fraud rate over time", "Class imbalance", "Amounts by class",
                    "Per-terminal and per-customer activity", "Label delay", "Feature correlations"):
        assert section in text
    assert f"{len(frame):,} transactions, 10 days" in text  # the notebook ran on this sandbox
    # Six figures: the sixth (correlations) exists only because transaction_features was read.
    assert metadata["figures"].value.count("data:image/png;base64,") == 6
    assert Path(metadata["notebook"].value).suffix == ".ipynb" and metadata["rows"].value == len(frame)
    # The kernel is the platform's own, running this interpreter; no manual registration.
    spec = json.loads((home / "jupyter" / "kernels" / "fraud-platform" / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable
