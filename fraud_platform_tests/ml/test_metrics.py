"""Metric functions against sklearn and hand-computed FDH fixtures."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score

from fraud_platform.domain.metrics import (
    auc_roc,
    average_precision,
    card_precision_top_k,
    drop_known_compromised,
    threshold_for_alert_budget,
    threshold_metrics,
)


def test_ranking_and_threshold_metrics_match_sklearn():
    rng = np.random.default_rng(3)
    y = (rng.random(2000) < 0.05).astype(int)
    scores = np.clip(rng.normal(0.2 + 0.5 * y, 0.2), 0, 1)
    assert auc_roc(y, scores) == pytest.approx(roc_auc_score(y, scores))
    assert average_precision(y, scores) == pytest.approx(average_precision_score(y, scores))
    at = threshold_metrics(y, scores, 0.5)
    pred = (scores >= 0.5).astype(int)
    assert at.precision == pytest.approx(precision_score(y, pred))
    assert at.recall == pytest.approx(recall_score(y, pred))
    assert at.f1 == pytest.approx(f1_score(y, pred))
    assert at.tp + at.fp == pred.sum() and at.tp + at.fn == y.sum()
    assert np.isnan(auc_roc(np.zeros(5), np.arange(5))) and np.isnan(average_precision(np.zeros(5), np.arange(5)))


def _cards(day: date, n_cards: int, frauds: set[int], scores: dict[int, float]) -> pd.DataFrame:
    """One transaction per card plus a low-scored second one, so per-card max matters."""
    rows = []
    for card in range(n_cards):
        score = scores.get(card, 0.001 * (n_cards - card) / n_cards)
        rows.append({"event_date": day, "card_key": f"k{card:03d}", "score": score, "is_fraud": int(card in frauds)})
        rows.append({"event_date": day, "card_key": f"k{card:03d}", "score": score / 10, "is_fraud": 0})
    return pd.DataFrame(rows)


def test_card_precision_at_100_hand_computed():
    # Day 1: 150 cards; cards 0..99 get the top scores; 30 of them and 10 outside the top are frauds.
    top = {c: 0.9 - c * 0.001 for c in range(100)}
    day1 = _cards(date(2026, 1, 1), 150, set(range(0, 30)) | set(range(120, 130)), top)
    # Day 2: the 30 cards detected on day 1 would rank highest but are blocked (removed);
    # of the next 100 cards (30..129), cards 120..129 are fraud -> 10 / 100.
    day2_scores = {c: 0.99 - c * 0.001 for c in range(130)}
    day2 = _cards(date(2026, 1, 2), 150, set(range(0, 30)) | set(range(120, 130)), day2_scores)
    mean, per_day = card_precision_top_k(pd.concat([day1, day2]), k=100)
    assert per_day["card_precision"].tolist() == [0.30, 0.10]
    assert per_day["detected_cards"].tolist() == [30, 10]
    assert mean == pytest.approx(0.20)
    # Without removal the 30 cards count again on day 2: (30 + 10 of 70 others)... top 100 = 0..99 -> 30.
    _, kept = card_precision_top_k(pd.concat([day1, day2]), k=100, remove_detected=False)
    assert kept["card_precision"].tolist() == [0.30, 0.30]


def test_alert_budget_threshold_and_known_compromised_removal():
    scores = np.array([0.9, 0.8, 0.8, 0.7, 0.1, 0.05])
    days = np.array([1, 1, 1, 2, 2, 2])
    assert threshold_for_alert_budget(scores, days, 2) == 0.7  # 4 alerts over 2 days
    # Budget of 1/day = 2 alerts, but 0.8 is tied: the threshold moves above the tie (1 alert).
    t = threshold_for_alert_budget(scores, days, 1)
    assert 0.8 < t <= 0.9 and (scores >= t).sum() == 1

    ts = pd.Timestamp
    history = pd.DataFrame({"card_key": ["a", "b"], "is_fraud": [1, 1],
                            "label_known_at": [ts("2026-01-05 10:00", tz="UTC"), ts("2026-01-09 10:00", tz="UTC")]})
    test = pd.DataFrame({
        "card_key": ["a", "b", "b", "c", "c"],
        "event_date": [date(2026, 1, 8), date(2026, 1, 8), date(2026, 1, 10), date(2026, 1, 8), date(2026, 1, 12)],
        "is_fraud": [0, 0, 0, 1, 0],
        "label_known_at": [pd.NaT, pd.NaT, pd.NaT, ts("2026-01-11 00:00", tz="UTC"), pd.NaT],
    })
    kept = drop_known_compromised(test, history)
    # a: known since Jan 5 -> dropped; b: known Jan 9 -> kept on Jan 8, dropped Jan 10;
    # c: its own fraud becomes known on Jan 11 -> kept Jan 8, dropped Jan 12.
    assert list(zip(kept["card_key"], kept["event_date"])) == [("b", date(2026, 1, 8)), ("c", date(2026, 1, 8))]
