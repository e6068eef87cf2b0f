"""The dbt project as Dagster sees it, with its manifest produced on demand: a fresh clone (CI, a
new container) has no dbt/target/manifest.json, so loading the definitions runs `dbt parse` once,
and again whenever a project file is newer than the manifest (editing a model in development)."""

from __future__ import annotations

from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject
from filelock import FileLock

from fraud_platform.settings import PlatformSettings
from fraud_platform.warehouse import DBT_PROJECT_DIR, dbt_env_from_settings, dbt_executable, patched_environ

warehouse_project = DbtProject(project_dir=DBT_PROJECT_DIR)

_PROJECT_INPUTS = ("dbt_project.yml", "profiles.yml", "models", "macros", "tests")


def manifest_is_stale(project: DbtProject) -> bool:
    if not project.manifest_path.exists():
        return True
    built = project.manifest_path.stat().st_mtime
    for name in _PROJECT_INPUTS:
        path = project.project_dir / name
        files = [path] if path.is_file() else (p for p in path.rglob("*") if p.is_file())
        if any(f.stat().st_mtime > built for f in files):
            return True
    return False


def ensure_manifest(project: DbtProject = warehouse_project, settings: PlatformSettings | None = None) -> Path:
    """Path of an up-to-date manifest.json, parsing first if needed. A file lock keeps processes that
    load the definitions at the same time (two runs, webserver + daemon) from parsing twice."""
    if manifest_is_stale(project):
        project.manifest_path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(project.manifest_path) + ".lock"):
            if manifest_is_stale(project):
                env = dbt_env_from_settings(settings or PlatformSettings.from_env())
                with patched_environ(env):
                    DbtCliResource(project_dir=project, dbt_executable=dbt_executable()).cli(
                        ["parse", "--quiet"], target_path=project.target_path
                    ).wait()
    return project.manifest_path
