"""A fresh clone has no dbt/target/manifest.json: loading the definitions must produce it (dbt
parse), reuse it while current, and re-parse when a project file is newer."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from dagster_dbt import DbtProject

from fraud_platform.defs.warehouse.project import ensure_manifest, manifest_is_stale
from fraud_platform.warehouse import DBT_PROJECT_DIR
from fraud_platform_tests.warehouse.conftest import warehouse_settings

pytestmark = pytest.mark.slow


def test_manifest_is_parsed_on_a_fresh_clone_reused_then_reparsed_after_an_edit(tmp_path: Path):
    clone = tmp_path / "dbt"
    shutil.copytree(DBT_PROJECT_DIR, clone, ignore=shutil.ignore_patterns("target", "logs"))
    project = DbtProject(project_dir=clone)
    settings = warehouse_settings(tmp_path / "lake", tmp_path / "fraud.duckdb")
    assert not project.manifest_path.exists()

    manifest = ensure_manifest(project, settings)
    assert manifest.exists() and '"model.fraud_warehouse.mart_daily_fraud_kpis"' in manifest.read_text()
    assert not manifest_is_stale(project)

    os.utime(manifest, (0, 0))  # manifest older than every project file, as after editing a model
    assert manifest_is_stale(project)
    ensure_manifest(project, settings)
    assert not manifest_is_stale(project)
    assert manifest.stat().st_mtime > 0
