"""The alert-feedback loop, measured: do analyst verdicts on the daily alert budget raise detection?

Two arms over the same simulated days (the platform's simulator), the same training schedule and
the same model, differing only in when fraud becomes known:

* ``chargebacks``: labels arrive on the simulator's delay (1..label_delay_days after the fraud);
* ``verdicts``: in addition, every day analysts review the day's alert budget (top-k cards by the
  day's max score) and the frauds among them become known ``--verdict-hours`` after the day ends
  (the console publishes them as ``analyst_confirmed`` labels; ``analyst_legitimate`` adds nothing
  a fraud label would, so only frauds are modelled).

Point in time throughout: each day's features come from the shared feature module
(``compute_batch_features``) over the previous days with only the labels known before each
transaction (so verdicts feed the terminal fraud features at once), and every retraining
(every ``--retrain-days``, on the last ``--train-days`` days) labels a row fraud only if that was
known at training time. Printed per day and as means: card precision@k, AP, card recall@k.
Target: verdicts raise mean CP@k by >= 10 % relative.

    .venv/bin/python bench/feedback_loop.py                       # 60 days, FDH population
    .venv/bin/python bench/feedback_loop.py --customers 1000 --terminals 2000 --k 20   # short
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_line, print_table  # noqa: E402

from fraud_platform.domain.features import FEATURE_COLUMNS, compute_batch_features
from fraud_platform.domain.metrics import average_precision, card_precision_top_k
from fraud_platform.domain.simulator import SimulationConfig, TransactionSimulator
from fraud_platform.ml.datasets import simulated_sandbox_frame

HISTORY_DAYS = 38  # longest feature window: 30-day delayed terminal window + 7-day delay (+1 open day)


def day_features(frame: pd.DataFrame, day: date, labels: pd.DataFrame) -> pd.DataFrame:
    """Features of ``day``'s transactions over the previous HISTORY_DAYS days, with ``labels`` as known."""
    history = frame[(frame["event_date"] >= day - timedelta(days=HISTORY_DAYS)) & (frame["event_date"] <= day)]
    feats = compute_batch_features(history, labels)
    return feats.loc[history["event_date"] == day]


def train(frame: pd.DataFrame, features: pd.DataFrame, labels: pd.DataFrame, start: date, end: date, seed: int):
    """XGBoost on rows of [start, end) labelled fraud only if known before ``end`` (midnight UTC)."""
    from xgboost import XGBClassifier

    rows = frame[(frame["event_date"] >= start) & (frame["event_date"] < end)]
    cutoff = pd.Timestamp(end, tz="UTC")
    known = set(labels.loc[labels["label_known_at"] < cutoff, "transaction_id"])
    y = rows["transaction_id"].isin(known).astype(int).to_numpy()
    X = features.loc[rows.index, FEATURE_COLUMNS].to_numpy(dtype="float64")
    model = XGBClassifier(n_estimators=100, max_depth=5, learning_rate=0.1, n_jobs=2, random_state=seed, eval_metric="aucpr")
    return model.fit(X, y), int(y.sum())


def run_arm(name: str, frame: pd.DataFrame, base: pd.DataFrame, days: list[date], first_scored: int, args) -> pd.DataFrame:
    labels = base.copy()
    features = pd.DataFrame(index=frame.index, columns=FEATURE_COLUMNS, dtype="float64")
    scores = pd.Series(np.nan, index=frame.index)
    model = None
    for i, day in enumerate(days):
        if i >= first_scored and (i - first_scored) % args.retrain_days == 0:
            model, frauds = train(frame, features, labels, day - timedelta(days=args.train_days), day, args.seed)
            print(f"  {name}: retrained on {day - timedelta(days=args.train_days)}..{day - timedelta(days=1)} ({frauds} known frauds)", flush=True)
        if i < first_scored - args.train_days:
            continue  # only history: no features needed yet
        feats = day_features(frame, day, labels)
        features.loc[feats.index, FEATURE_COLUMNS] = feats[FEATURE_COLUMNS].to_numpy(dtype="float64")
        if model is None:
            continue
        scores.loc[feats.index] = model.predict_proba(feats[FEATURE_COLUMNS].to_numpy(dtype="float64"))[:, 1]
        if name == "verdicts":  # analysts review the day's alert budget; frauds among them are known hours later
            today = frame.loc[feats.index].assign(score=scores.loc[feats.index])
            top = today.groupby("card_key")["score"].max().nlargest(args.k).index
            reviewed = today[today["card_key"].isin(top) & (today["truth"] == 1)]
            known_at = pd.Timestamp(day + timedelta(days=1), tz="UTC") + pd.Timedelta(hours=args.verdict_hours)
            verdicts = pd.DataFrame({"transaction_id": reviewed["transaction_id"], "label_known_at": known_at, "is_fraud": 1})
            labels = (pd.concat([labels, verdicts]).sort_values("label_known_at").drop_duplicates("transaction_id").reset_index(drop=True))
    return scores


def evaluate(frame: pd.DataFrame, scores: pd.Series, k: int) -> pd.DataFrame:
    scored = frame.assign(score=scores, is_fraud=frame["truth"]).loc[scores.notna()]
    _, per_day = card_precision_top_k(scored, k)
    ap = scored.groupby("event_date").apply(lambda g: average_precision(g["is_fraud"].to_numpy(), g["score"].to_numpy()), include_groups=False)
    per_day["average_precision"] = per_day["day"].map(ap)
    per_day["card_recall"] = per_day["detected_cards"] / per_day["compromised_cards"].clip(lower=1)
    return per_day


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--warmup-days", type=int, default=21, help="days before the first model (history only)")
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--terminals", type=int, default=10000)
    parser.add_argument("--k", type=int, default=100, help="daily alert budget (cards)")
    parser.add_argument("--train-days", type=int, default=14)
    parser.add_argument("--retrain-days", type=int, default=7)
    parser.add_argument("--verdict-hours", type=float, default=4.0, help="verdict known this long after the day ends")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.days < 60:
        print(f"note: {args.days} days is shorter than the 60-day protocol", flush=True)
    started = time.perf_counter()
    print(f"machine: {machine_line()}", flush=True)
    sim = TransactionSimulator(SimulationConfig(start=date(2026, 1, 1), days=args.days, n_customers=args.customers,
                                                n_terminals=args.terminals, seed=args.seed))
    frame = simulated_sandbox_frame(sim).rename(columns={"is_fraud": "truth"})
    base = frame.loc[frame["truth"] == 1, ["transaction_id", "label_known_at"]].assign(is_fraud=1)  # chargebacks, on their delay
    frame = frame.drop(columns=["label_known_at"])
    days = sorted(frame["event_date"].unique())
    print(f"{len(frame):,} transactions over {len(days)} days, {int(frame['truth'].sum()):,} frauds; k = {args.k}", flush=True)
    per_arm = {}
    for arm in ("chargebacks", "verdicts"):
        print(f"arm {arm}:", flush=True)
        per_arm[arm] = evaluate(frame, run_arm(arm, frame, base, days, args.warmup_days, args), args.k)
    a, b = per_arm["chargebacks"], per_arm["verdicts"].set_index("day").loc[per_arm["chargebacks"]["day"]].reset_index()
    rows = [[str(d), ca, va, cp, vp, cr, vr] for d, ca, va, cp, vp, cr, vr in zip(
        a["day"], a["card_precision"], b["card_precision"], a["average_precision"], b["average_precision"], a["card_recall"], b["card_recall"])]
    fmt = lambda rows: [[r[0], *[f"{x:.3f}" for x in r[1:]]] for r in rows]  # noqa: E731
    header = ["day", "CP@k charge.", "CP@k verdicts", "AP charge.", "AP verdicts", "recall charge.", "recall verdicts"]
    print_table("Per day", header, fmt(rows))
    means = [["mean", a["card_precision"].mean(), b["card_precision"].mean(), a["average_precision"].mean(),
              b["average_precision"].mean(), a["card_recall"].mean(), b["card_recall"].mean()]]
    print_table("Mean over scored days", header, fmt(means))
    lift = b["card_precision"].mean() / a["card_precision"].mean() - 1 if a["card_precision"].mean() else float("nan")
    print(f"\nCP@{args.k} relative lift from verdicts: {lift:+.1%} (target >= +10 %); {len(a)} scored days; "
          f"{time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
