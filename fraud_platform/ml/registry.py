"""Model registry: register every trained version, promote it to the ``champion`` alias only when
it beats the current champion on the same test rows and passes sanity gates, otherwise alias it
``challenger`` with the reason. Everything the streaming scorer needs is published as model
version tags and read back with :func:`load_champion`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

CHAMPION_ALIAS = "champion"
CHALLENGER_ALIAS = "challenger"

# Model version tags the scorer reads (keep in sync with ChampionInfo).
TAG_MODEL_URI = "fraud.model_uri"
TAG_FEATURES = "fraud.features"
TAG_THRESHOLD = "fraud.threshold"
TAG_TEST_WINDOW = "fraud.test_window"
TAG_STATUS = "fraud.status"
TAG_REASON = "fraud.promotion_reason"
TAG_METRIC_PREFIX = "fraud.metric."
TAG_SCORE_SHARES = "fraud.test_score_shares"  # JSON: share of test-window scores per 0.1-wide bin


@dataclass(frozen=True)
class PromotionPolicy:
    metric: str = "average_precision"
    min_improvement: float = 0.0  # the candidate must exceed the champion by MORE than this
    max_latency_ms_per_1k: float = 1000.0  # predict_proba on 1000 rows, median of 3
    min_score_std: float = 1e-6  # a constant scorer is broken
    max_share_above_half: float = 0.5  # more than half the traffic scored > 0.5 is not sane


@dataclass(frozen=True)
class GateReport:
    failures: list[str]
    latency_ms_per_1k: float
    score_mean: float
    score_std: float
    share_above_half: float

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


@dataclass(frozen=True)
class ChampionInfo:
    """What the streaming scorer needs to load and use the champion."""

    name: str
    version: str
    model_uri: str
    run_id: str | None
    threshold: float
    features: list[str]
    metrics: dict[str, float] = field(default_factory=dict)


def sanity_gates(model: Any, sample: pd.DataFrame, policy: PromotionPolicy = PromotionPolicy()) -> GateReport:
    """Score ``sample`` (model-input rows): NaN/range/spread checks and a latency budget."""
    failures = []
    scores = np.asarray(model.predict_proba(sample)[:, 1], dtype=float)
    if np.isnan(scores).any():
        failures.append(f"{int(np.isnan(scores).sum())} NaN scores")
    finite = scores[~np.isnan(scores)]
    if finite.size and (finite.min() < 0 or finite.max() > 1):
        failures.append("scores outside [0, 1]")
    std = float(finite.std()) if finite.size else 0.0
    if std < policy.min_score_std:
        failures.append(f"score spread {std:.2e} below {policy.min_score_std:.0e} (constant scorer)")
    share = float((finite > 0.5).mean()) if finite.size else 1.0
    if share > policy.max_share_above_half:
        failures.append(f"{share:.1%} of rows scored > 0.5")
    batch = sample.sample(n=1000, replace=len(sample) < 1000, random_state=0)
    timings = []
    for _ in range(3):
        tick = time.perf_counter()
        model.predict_proba(batch)
        timings.append((time.perf_counter() - tick) * 1000)
    latency = float(np.median(timings))
    if latency > policy.max_latency_ms_per_1k:
        failures.append(f"latency {latency:.0f} ms/1k rows above {policy.max_latency_ms_per_1k:.0f}")
    return GateReport(failures, latency, float(finite.mean()) if finite.size else float("nan"), std, share)


def decide(
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    gates: GateReport,
    policy: PromotionPolicy = PromotionPolicy(),
) -> Decision:
    """Promote only a sane candidate that beats the champion (measured on the same rows) by the margin."""
    if not gates.passed:
        return Decision(False, "sanity gates failed: " + "; ".join(gates.failures))
    value = candidate.get(policy.metric, float("nan"))
    if value is None or math.isnan(value):
        return Decision(False, f"candidate {policy.metric} is undefined on the test window")
    if champion is None:
        return Decision(True, f"no champion yet; {policy.metric}={value:.4f}")
    best = champion.get(policy.metric, float("nan"))
    if best is None or math.isnan(best):
        return Decision(False, f"champion {policy.metric} could not be measured on the same rows")
    if value > best + policy.min_improvement:
        return Decision(True, f"{policy.metric} {value:.4f} beats champion {best:.4f} by more than {policy.min_improvement}")
    return Decision(False, f"{policy.metric} {value:.4f} does not beat champion {best:.4f} by more than {policy.min_improvement}")


def register_version(client: MlflowClient, model_name: str, model_uri: str, run_id: str | None,
                     tags: Mapping[str, Any]) -> str:
    """Register ``model_uri`` as a new version of ``model_name`` with the scorer's tags."""
    try:
        client.get_registered_model(model_name)
    except MlflowException:
        client.create_registered_model(model_name, description="Card fraud scorer (XGBoost on point-in-time features)")
    model_id = model_uri.split("/", 1)[1] if model_uri.startswith("models:/m-") else None
    version = client.create_model_version(
        model_name, source=model_uri, run_id=run_id, model_id=model_id,
        tags={TAG_MODEL_URI: model_uri, **{k: _tag(v) for k, v in tags.items()}},
    )
    return str(version.version)


def apply_decision(client: MlflowClient, model_name: str, version: str, decision: Decision) -> str:
    """Move the champion alias (promotion) or the challenger alias (rejection); returns the alias."""
    alias = CHAMPION_ALIAS if decision.promote else CHALLENGER_ALIAS
    client.set_model_version_tag(model_name, version, TAG_STATUS, alias)
    client.set_model_version_tag(model_name, version, TAG_REASON, decision.reason[:4000])
    client.set_registered_model_alias(model_name, alias, version)
    return alias


def publish_tags(metrics: Mapping[str, float], *, features: list[str], threshold: float, test_window: str) -> dict[str, str]:
    """The tag set a version carries: scorer inputs plus its test metrics."""
    return {
        TAG_FEATURES: json.dumps(features),
        TAG_THRESHOLD: repr(float(threshold)),
        TAG_TEST_WINDOW: test_window,
        **{f"{TAG_METRIC_PREFIX}{k}": repr(float(v)) for k, v in metrics.items()},
    }


def load_champion(client: MlflowClient, model_name: str, alias: str = CHAMPION_ALIAS) -> ChampionInfo | None:
    """The version behind ``alias`` with its published tags, or None when there is none yet.

    Only "no such model/alias" means None; an unreachable or failing registry raises, so callers
    (the scorer's hot reload) can tell "nothing published" from "registry down"."""
    try:
        version = client.get_model_version_by_alias(model_name, alias)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    tags = version.tags or {}
    return ChampionInfo(
        name=model_name,
        version=str(version.version),
        model_uri=tags.get(TAG_MODEL_URI) or f"models:/{model_name}/{version.version}",
        run_id=version.run_id,
        threshold=float(tags.get(TAG_THRESHOLD, "nan")),
        features=json.loads(tags.get(TAG_FEATURES, "[]")),
        metrics={k[len(TAG_METRIC_PREFIX):]: float(v) for k, v in tags.items() if k.startswith(TAG_METRIC_PREFIX)},
    )


def load_model(info: ChampionInfo, tracking_uri: str | None = None):
    """The champion's sklearn pipeline (``predict_proba`` on ``info.features`` columns, float64)."""
    import mlflow

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    return mlflow.sklearn.load_model(f"models:/{info.name}/{info.version}")


def _tag(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)
