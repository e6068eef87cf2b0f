"""MLflow plumbing shared by training, evaluation, the registry asset and the benchmark."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from fraud_platform.settings import MlflowSettings

if TYPE_CHECKING:  # mlflow is imported lazily: resources.py imports this module at load time
    from mlflow import MlflowClient


class TrackingTarget(MlflowSettings):
    """The MLflow settings and the two calls that use them (the Dagster ``MlflowResource`` is one)."""

    def activate(self) -> str:
        """Point the mlflow fluent API here and return the experiment id (created if missing)."""
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.resolved_registry_uri)
        client = self.client()
        experiment = client.get_experiment_by_name(self.experiment_name)
        if experiment is None:
            location = f"{self.artifact_root.rstrip('/')}/{self.experiment_name}"
            experiment_id = client.create_experiment(self.experiment_name, artifact_location=location)
        else:
            experiment_id = experiment.experiment_id
        mlflow.set_experiment(experiment_id=experiment_id)
        return experiment_id

    def client(self) -> "MlflowClient":
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.resolved_registry_uri)


def git_commit(path: Path | None = None) -> str | None:
    """HEAD commit of the source tree, if it is a git checkout (read-only git call)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path or Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=10, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
