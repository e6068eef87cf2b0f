"""Distribution drift between a reference sample (what the model was trained on) and recent
traffic: Population Stability Index per feature, plus the two-sample Kolmogorov-Smirnov test for
continuous features. Pure numpy/scipy so batch monitoring and notebooks share one definition."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

PSI_EPSILON = 1e-4
# Common reading of PSI: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 significant shift.
PSI_MODERATE = 0.1
PSI_SIGNIFICANT = 0.25


def psi(reference: np.ndarray, recent: np.ndarray, bins: int = 10) -> float:
    """PSI over quantile bins of the reference (robust to scale; handles discrete features)."""
    reference = np.asarray(reference, dtype=float)
    recent = np.asarray(recent, dtype=float)
    reference = reference[~np.isnan(reference)]
    recent = recent[~np.isnan(recent)]
    if reference.size == 0 or recent.size == 0:
        return float("nan")
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if edges.size < 2:  # constant reference: one bin for "equal", one for "different"
        ref_share = np.array([1.0, 0.0])
        new_equal = np.mean(recent == reference[0])
        new_share = np.array([new_equal, 1.0 - new_equal])
    else:
        edges[0], edges[-1] = -np.inf, np.inf
        ref_share = np.histogram(reference, edges)[0] / reference.size
        new_share = np.histogram(recent, edges)[0] / recent.size
    ref_share = np.clip(ref_share, PSI_EPSILON, None)
    new_share = np.clip(new_share, PSI_EPSILON, None)
    return float(np.sum((new_share - ref_share) * np.log(new_share / ref_share)))


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    psi: float
    ks_statistic: float | None
    ks_pvalue: float | None
    reference_mean: float
    recent_mean: float

    @property
    def level(self) -> str:
        if np.isnan(self.psi):
            return "no data"
        return "significant" if self.psi > PSI_SIGNIFICANT else "moderate" if self.psi > PSI_MODERATE else "stable"


def feature_drift(reference: pd.DataFrame, recent: pd.DataFrame, features: list[str], bins: int = 10) -> list[FeatureDrift]:
    """Drift of each feature; KS only where a feature has more than two distinct values."""
    results = []
    for name in features:
        ref = pd.to_numeric(reference[name], errors="coerce").to_numpy(dtype=float)
        new = pd.to_numeric(recent[name], errors="coerce").to_numpy(dtype=float)
        ks_stat = ks_p = None
        ref_clean, new_clean = ref[~np.isnan(ref)], new[~np.isnan(new)]
        if ref_clean.size and new_clean.size and np.unique(ref_clean).size > 2:
            test = stats.ks_2samp(ref_clean, new_clean)
            ks_stat, ks_p = float(test.statistic), float(test.pvalue)
        results.append(
            FeatureDrift(
                name, psi(ref, new, bins), ks_stat, ks_p,
                float(np.nanmean(ref)) if ref_clean.size else float("nan"),
                float(np.nanmean(new)) if new_clean.size else float("nan"),
            )
        )
    return results


def drift_table(drifts: list[FeatureDrift]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "feature": d.feature, "psi": round(d.psi, 4), "level": d.level,
                "ks_statistic": None if d.ks_statistic is None else round(d.ks_statistic, 4),
                "ks_pvalue": None if d.ks_pvalue is None else float(f"{d.ks_pvalue:.3g}"),
                "reference_mean": round(d.reference_mean, 4), "recent_mean": round(d.recent_mean, 4),
            }
            for d in drifts
        ]
    ).sort_values("psi", ascending=False, na_position="last")


def comparable_window(frame: pd.DataFrame, days: int, warmup_days: int, time_column: str = "event_time") -> tuple[pd.DataFrame, bool]:
    """The newest ``days`` days of ``frame`` that lie after its first ``warmup_days`` days.

    Rolling features of the first days of a history are computed on incomplete windows (a 30-day
    count on day 3 is small by construction), so comparing them with live traffic "finds" drift in
    a stationary world. Reference and recent are both ``days`` long and both past warm-up; when
    the history is shorter than the warm-up the newest days are used and ``False`` says so."""
    day = pd.to_datetime(frame[time_column], utc=True).dt.floor("D")
    first, last = day.min(), day.max()
    warmed = day >= first + pd.Timedelta(days=warmup_days)
    start = last - pd.Timedelta(days=days - 1)
    complete = bool(warmed.any())
    keep = (day >= start) & warmed if complete else day >= start
    return frame.loc[keep.to_numpy()], complete
