"""Fraud-detection metrics (Fraud Detection Handbook definitions), used by model evaluation, the
registry's champion comparison and the benchmark, so all three score models the same way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, confusion_matrix, roc_auc_score


def auc_roc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """AUC ROC, NaN when only one class is present (undefined rather than an exception)."""
    y = np.asarray(y_true)
    return float(roc_auc_score(y, scores)) if len(np.unique(y)) == 2 else float("nan")


def average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """AUPRC as average precision; NaN without positives."""
    y = np.asarray(y_true)
    return float(average_precision_score(y, scores)) if y.sum() > 0 else float("nan")


@dataclass(frozen=True)
class ThresholdMetrics:
    threshold: float
    precision: float
    recall: float
    f1: float
    tn: int
    fp: int
    fn: int
    tp: int


def threshold_metrics(y_true: np.ndarray, scores: np.ndarray, threshold: float) -> ThresholdMetrics:
    """Precision/recall/F1 and confusion matrix when alerting on ``score >= threshold``."""
    y = np.asarray(y_true).astype(int)
    pred = (np.asarray(scores) >= threshold).astype(int)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, pred, labels=[0, 1]).ravel())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return ThresholdMetrics(float(threshold), precision, recall, f1, tn, fp, fn, tp)


def threshold_for_alert_budget(scores: np.ndarray, days: np.ndarray, alerts_per_day: int) -> float:
    """Lowest threshold whose mean daily alert count stays within ``alerts_per_day``.

    Needs only scores (no labels), so it can be set on the traffic being scored without leakage.
    """
    scores = np.asarray(scores, dtype=float)
    n_days = max(len(np.unique(days)), 1)
    allowed = alerts_per_day * n_days
    if allowed <= 0 or len(scores) == 0:
        return float("inf")
    if allowed >= len(scores):
        return float(scores.min())
    ordered = np.sort(scores)[::-1]
    cut = ordered[allowed - 1]
    # Ties at the cut would exceed the budget: move just above the tied value in that case.
    if (scores >= cut).sum() > allowed:
        return float(np.nextafter(cut, np.inf))
    return float(cut)


def card_precision_top_k(
    frame: pd.DataFrame,
    k: int = 100,
    *,
    score_col: str = "score",
    card_col: str = "card_key",
    day_col: str = "event_date",
    label_col: str = "is_fraud",
    remove_detected: bool = True,
) -> tuple[float, pd.DataFrame]:
    """FDH Card Precision@k: per day, the ``k`` cards with the highest max score; the fraction
    of them with a fraud that day. Cards detected (true alerts) on a day are removed from later
    days, as an investigated card would be blocked. Returns (mean over days, per-day table)."""
    detected: set = set()
    rows = []
    for day, day_frame in frame.sort_values(day_col).groupby(day_col, sort=True):
        if remove_detected and detected:
            day_frame = day_frame[~day_frame[card_col].isin(detected)]
        cards = day_frame.groupby(card_col).agg(score=(score_col, "max"), fraud=(label_col, "max")).reset_index()
        top = cards.sort_values([ "score", card_col], ascending=[False, True], kind="stable").head(k)
        hits = top.loc[top["fraud"] == 1, card_col]
        detected.update(hits)
        rows.append(
            {
                "day": day,
                "card_precision": len(hits) / k,
                "compromised_cards": int(cards["fraud"].sum()),
                "detected_cards": len(hits),
            }
        )
    per_day = pd.DataFrame(rows, columns=["day", "card_precision", "compromised_cards", "detected_cards"])
    return (float(per_day["card_precision"].mean()) if len(per_day) else float("nan")), per_day


def drop_known_compromised(frame: pd.DataFrame, history: pd.DataFrame, *, card_col: str = "card_key") -> pd.DataFrame:
    """FDH test protocol: remove a test day's transactions on cards whose fraud was already known
    before that day (``label_known_at`` < 00:00 UTC of the day), from ``history`` or the test set."""
    known = pd.concat([history, frame], ignore_index=True)
    known = known.loc[(known["is_fraud"] == 1) & known["label_known_at"].notna(), [card_col, "label_known_at"]]
    first_known = known.groupby(card_col)["label_known_at"].min()
    day_start = pd.to_datetime(frame["event_date"]).dt.tz_localize("UTC")
    card_known = frame[card_col].map(first_known)
    keep = card_known.isna() | (pd.to_datetime(card_known, utc=True) >= day_start)
    return frame[keep.to_numpy()]


def calibration_table(y_true: np.ndarray, scores: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Mean predicted vs observed fraud rate per score quantile bin (scores are skewed, so
    quantile bins keep every bin populated)."""
    frame = pd.DataFrame({"y": np.asarray(y_true, dtype=float), "s": np.asarray(scores, dtype=float)})
    frame["bin"] = pd.qcut(frame["s"].rank(method="first"), q=min(bins, len(frame)), labels=False)
    return frame.groupby("bin").agg(mean_score=("s", "mean"), fraud_rate=("y", "mean"), n=("y", "size")).reset_index()


def brier(y_true: np.ndarray, scores: np.ndarray) -> float:
    return float(brier_score_loss(np.asarray(y_true), np.asarray(scores)))


def unseen_frauds(frame: pd.DataFrame, history: pd.DataFrame, *, keys: Sequence[str] = ("terminal_id", "card_key")) -> np.ndarray:
    """Per row of ``frame``: True when no fraud at its terminal nor on its card had a known label
    (``label_known_at``) before the row's ``event_time`` - the frauds no model can link to a known
    compromise at scoring time (only the transaction itself can give them away)."""
    known = pd.concat([history, frame], ignore_index=True)
    known = known.loc[(known["is_fraud"] == 1) & known["label_known_at"].notna()]
    event_time = pd.to_datetime(frame["event_time"], utc=True)
    unseen = np.ones(len(frame), dtype=bool)
    for key in keys:
        if key not in frame.columns:
            continue
        first_known = pd.to_datetime(known.groupby(key)["label_known_at"].min(), utc=True)
        seen = pd.to_datetime(frame[key].map(first_known), utc=True) < event_time
        unseen &= ~seen.fillna(False).to_numpy(dtype=bool)
    return unseen


def scenario_report(frame: pd.DataFrame, scores: np.ndarray, threshold: float, history: pd.DataFrame,
                    *, scenario_col: str = "fraud_scenario") -> pd.DataFrame:
    """Where the model misses, per fraud scenario, at the operating threshold: frauds, caught,
    recall, the scenario's share of all alerts (``precision``: the rows sum to the overall
    precision) and the share of its frauds unseen at scoring time (see ``unseen_frauds``).
    A final ``all`` row holds the totals; frauds without a scenario are grouped as ``unknown``."""
    y = frame["is_fraud"].to_numpy(dtype=int) == 1
    alert = np.asarray(scores) >= threshold
    unseen = unseen_frauds(frame, history)
    scenario = frame[scenario_col].astype("Int64").astype(str).replace("<NA>", "unknown").to_numpy() \
        if scenario_col in frame.columns else np.full(len(frame), "unknown", dtype=object)
    alerts = int(alert.sum())
    rows = []
    groups = sorted(set(scenario[y]), key=lambda s: (s == "unknown", s))
    for name, mask in [*[(s, y & (scenario == s)) for s in groups], ("all", y)]:
        frauds, caught = int(mask.sum()), int((mask & alert).sum())
        rows.append({
            "scenario": name, "frauds": frauds, "caught": caught, "missed": frauds - caught,
            "recall": caught / frauds if frauds else float("nan"),
            "precision": caught / alerts if alerts else float("nan"),
            "unseen_at_scoring": int((mask & unseen).sum()),
            "unseen_share": float((mask & unseen).sum() / frauds) if frauds else float("nan"),
        })
    return pd.DataFrame(rows)


def score_shares(scores: np.ndarray, bins: int = 10) -> list[float]:
    """Share of scores in each equal-width bin of [0, 1] (the console compares live and test-window
    score distributions with it)."""
    scores = np.clip(np.asarray(scores, dtype=float), 0.0, 1.0)
    counts = np.bincount(np.minimum((scores * bins).astype(int), bins - 1), minlength=bins)
    return (counts / max(1, len(scores))).tolist()
