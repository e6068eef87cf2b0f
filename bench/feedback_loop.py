"""The alert-feedback loop, measured: do analyst verdicts on the daily alert budget raise detection?

Two arms over the same simulated days (the platform's simulator), the same retraining schedule and
the same model, differing only in when labels become known:

* ``chargebacks``: fraud labels arrive on the simulator's delay (1..label_delay_days after the
  fraud, chargebacks and other confirmations alike); nothing else is labelled;
* ``verdicts``: in addition, every day analysts investigate the day's alert budget - the top-k
  cards by max score, cards already caught excluded, exactly the cards CP@k counts - and label
  every transaction of those cards that day ``analyst_confirmed`` (fraud) or ``analyst_legitimate``,
  known ``--verdict-hours`` after the alert (the card's top-scoring transaction).

What the platform does with them, reproduced with its own code:

* features: the online path (``FeatureSnapshot`` rolled day by day, ``features`` for the day's
  transactions with the labels arriving during it) with each transaction's earliest fraud label -
  so a verdict counts in the terminal fraud features from its ``known_at`` on (the undelayed
  ``terminal_*_recent_*`` windows and fraud age); a later chargeback counts nothing more;
* training: every ``--retrain-days`` at midnight, the platform's XGBoost pipeline
  (``ml.training.build_pipeline``, fixed parameters instead of the search) on the days from
  ``--train-days`` matured days back to yesterday, keeping only the rows whose label
  ``catalogue.label_is_final`` accepts then: matured partitions (both arms) and rows with an
  analyst verdict known by then (the verdicts arm's feedback samples). Labels are those known at
  training time; each row's features are the point-in-time ones it was scored with.

A third arm, ``verdicts-fc`` (``--arms``), uses the same verdicts the FDH / Dal Pozzolo way instead
of the platform's one-model rule: a *delayed* classifier on the matured rows (the chargebacks arm's
model) and a *feedback* classifier on the verdict rows of the immature days, scores averaged
(``--feedback-weight`` alpha, 0.5). It is the Handbook's remedy for what the joint model does: a
few hundred verdict rows drowned in tens of thousands of matured ones.

Two budget policies, each an arm of its own, measured against the analysis's open channels:
``verdicts-sc`` is the verdicts arm with *cleared-card suppression* (a card an analyst cleared as
legitimate is not re-alerted for ``--suppress-days`` unless its score exceeds the cleared score by
``--suppress-margin``; the freed slots go to the next cards); ``chargebacks-sw`` / ``verdicts-sw``
add a *same-day terminal sweep* (common point of purchase: when a terminal's fraud becomes known
today - a chargeback arriving, or an analyst confirming an alerted card's fraud there - its other
cards of the day are alerted next, inside the same budget). Their CP@k is that of the budget they
actually alerted.

World options, common to all arms (never per arm): ``--label-delay fixed`` makes every fraud known
exactly 7 days after it (FDH's delay period: within the last week nothing is known except what
investigators confirm) instead of the simulator's uniform 1..7 days; ``--drift-day N`` switches card
compromises from day N on to the simulator's scenario 4 (night bursts at unfamiliar terminals at
1.5-3x the holder's mean amount instead of 5x amounts), a new fraud pattern mid-period. With drift
the means are also printed for the days from the drift on (the days before it are the stationary
run's, byte for byte).

Printed per day and as means: card precision@k, AP, card recall@k (compromised cards caught among
those not caught before). Target: verdicts raise mean CP@k by >= 10 % relative. Then where the
verdicts can act (per scenario, terminal fraud known, same-day verdicts, the missed cards a same-day
sweep could reach) and how each arm spends its budget (alerts on cards already alerted before or
cleared within ``--suppress-days``, the rank of the compromised cards left out, overlap with the
chargebacks arm's alerts).

    .venv/bin/python bench/feedback_loop.py                 # 60 days, FDH population, k = 100
    .venv/bin/python bench/feedback_loop.py --days 35 --customers 1000 --terminals 2000 --k 20   # smoke
    .venv/bin/python bench/feedback_loop.py --label-delay fixed --retrain-days 1 --drift-day 41 \
        --arms chargebacks,verdicts,verdicts-fc             # FDH delay, daily retraining, drift
    .venv/bin/python bench/feedback_loop.py --arms chargebacks,verdicts,verdicts-sc,chargebacks-sw,verdicts-sw
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_line, print_table  # noqa: E402

from fraud_platform.domain.catalogue import label_is_final
from fraud_platform.domain.features import FEATURE_COLUMNS, FeatureSnapshot
from fraud_platform.domain.metrics import average_precision, card_precision_top_k
from fraud_platform.domain.simulator import LABEL_DELAYS, SimulationConfig, TransactionSimulator
from fraud_platform.ml.datasets import simulated_sandbox_frame
from fraud_platform.ml.training import Candidate, TrainingConfig, build_pipeline

MODEL = Candidate("xgboost", "none", {"n_estimators": 100, "max_depth": 5, "learning_rate": 0.1})


def midnight(day: date) -> pd.Timestamp:
    return pd.Timestamp(day, tz="UTC")


def ranked_cards(day_frame: pd.DataFrame) -> pd.DataFrame:
    """The day's cards as CP@k ranks them: per card its max score and that transaction's time."""
    best = day_frame.sort_values(["score", "event_time"], ascending=[False, True], kind="stable")
    cards = best.drop_duplicates("card_key")[["card_key", "score", "event_time"]]
    return cards.sort_values(["score", "card_key"], ascending=[False, True], kind="stable")


def suppressed_by_clearance(candidates: pd.DataFrame, clearances: pd.DataFrame, days: float, margin: float) -> np.ndarray:
    """Per candidate (card_key, score, event_time): True when an analyst cleared the card as legitimate
    within ``days`` before it (clearances: card_key, cleared_at, score) and its score is not above the
    highest cleared score by more than ``margin``."""
    if clearances.empty:
        return np.zeros(len(candidates), dtype=bool)
    pairs = candidates.reset_index(drop=True).reset_index().merge(clearances, on="card_key", suffixes=("", "_cleared"))
    recent = (pairs["cleared_at"] < pairs["event_time"]) & (pairs["cleared_at"] >= pairs["event_time"] - pd.Timedelta(days=days))
    ceiling = pairs.loc[recent].groupby("index")["score_cleared"].max()
    reference = pd.Series(np.arange(len(candidates))).map(ceiling)
    return (reference.notna() & (candidates["score"].to_numpy() <= reference + margin)).to_numpy()


ARMS = ("chargebacks", "verdicts", "verdicts-fc", "verdicts-sc", "chargebacks-sw", "verdicts-sw")


class Arm:
    """One arm's state: per transaction the label outcome as it stands (earliest fraud label, else an
    analyst's "legitimate"), its point-in-time features and score."""

    def __init__(self, name: str, frame: pd.DataFrame, args) -> None:
        self.name, self.frame, self.args = name, frame, args
        self.reviews = not name.startswith("chargebacks")
        self.sweeps = name.endswith("-sw")  # same-day terminal sweep (common point of purchase)
        self.swept: list[dict] = []  # per day: cards the sweep alerted, and how many held a fraud
        self.suppresses = name == "verdicts-sc"  # cleared-card suppression on the alert budget
        self.clearances: list[pd.DataFrame] = []  # (card_key, cleared_at, score): alerted, no fraud that day
        self.suppression: list[dict] = []  # per day: what the policy moved out of the budget
        self.compromised: dict[date, int] = {}  # per day: cards with a fraud, not caught before (recall's base)
        self.missed_ranks: list[int] = []  # rank of each compromised card left out of the budget (CP@k's k + 1, ...)
        self.feedback_model = None  # verdicts-fc: the FDH feedback classifier beside the delayed one
        self.known_at = frame["chargeback_at"].copy()  # earliest fraud label's known_at (NaT: none)
        self.label_type = frame["chargeback_type"].copy()
        self.verdict_at = pd.Series(pd.NaT, index=frame.index, dtype=self.known_at.dtype)  # "legitimate" verdicts
        self.features = np.full((len(frame), len(FEATURE_COLUMNS)), np.nan)
        self.scores = np.full(len(frame), np.nan)
        self.caught: set = set()  # cards with a true alert: blocked, out of later budgets (as CP@k)
        self.model = None
        self.verdicts = 0
        self.alerts: list[pd.DataFrame] = []  # (event_date, card_key, fraud, cleared_recently) of each day's budget

    def fraud_labels(self, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """Fraud labels becoming known in [start, end), as the labels topic would carry them."""
        new = (self.known_at >= start) & (self.known_at < end) & (self.frame["truth"] == 1)
        rows = self.frame.loc[new, ["transaction_id", "terminal_id", "event_time"]]
        return rows.assign(label_known_at=self.known_at[new], is_fraud=1)

    def retrain(self, day: date) -> str:
        cutoff = midnight(day)
        first = day - timedelta(days=self.args.maturity_days + self.args.train_days)
        window = self.frame.index[(self.frame["event_date"] >= first) & (self.frame["event_date"] < day)]
        rows = self.frame.loc[window]
        outcome_at = self.known_at[window].fillna(self.verdict_at[window])
        final = label_is_final(rows["event_date"], self.label_type[window], outcome_at, self.args.maturity_days,
                               cutoff.to_pydatetime())
        window = window[final]
        is_matured = (self.frame.loc[window, "event_date"] <= day - timedelta(days=self.args.maturity_days + 1)).to_numpy()
        matured = int(is_matured.sum())
        note = ""
        if self.name == "verdicts-fc":  # delayed classifier on matured rows, feedback classifier on the verdicts
            feedback, window = window[~is_matured], window[is_matured]
            self.feedback_model, note = self._fit(feedback, cutoff), f"; feedback classifier on {len(feedback):,} rows"
            if self.feedback_model is None:
                note += " (one class: not used)"
        self.model = self._fit(window, cutoff)
        y = self._labels(window, cutoff)
        return (f"{self.name}: retrained at {day} on {first}..{day - timedelta(days=1)}: {len(window):,} rows "
                f"({matured:,} matured, {len(window) - matured:,} with verdicts), {int(y.sum()):,} frauds{note}")

    def _labels(self, rows: pd.Index, cutoff: pd.Timestamp) -> np.ndarray:
        return ((self.known_at[rows] < cutoff) & (self.frame.loc[rows, "truth"] == 1)).to_numpy(dtype=int)

    def _fit(self, rows: pd.Index, cutoff: pd.Timestamp):
        """The platform's pipeline on these rows, labelled as known at ``cutoff`` (None: one class only)."""
        y = self._labels(rows, cutoff)
        if len(y) == 0 or y.min() == y.max():
            return None
        config = TrainingConfig(n_jobs=self.args.threads, seed=self.args.seed)
        return build_pipeline(MODEL, y, config).fit(pd.DataFrame(self.features[rows], columns=FEATURE_COLUMNS), y)

    def score(self, rows: pd.Index) -> np.ndarray:
        """The model's fraud probability; verdicts-fc averages the delayed and feedback classifiers
        (FDH / Dal Pozzolo et al. 2017: A_t = alpha F_t + (1 - alpha) D_t)."""
        X = pd.DataFrame(self.features[rows], columns=FEATURE_COLUMNS)
        delayed = self.model.predict_proba(X)[:, 1]
        if self.feedback_model is None:
            return delayed
        alpha = self.args.feedback_weight
        return alpha * self.feedback_model.predict_proba(X)[:, 1] + (1 - alpha) * delayed


def run_arm(arm: Arm, days: list[date], by_day: dict, args) -> None:
    frame = arm.frame
    snapshot = FeatureSnapshot.build(frame.iloc[:0], as_of=midnight(days[0]))
    for i, day in enumerate(days):
        start, end = midnight(day), midnight(day + timedelta(days=1))
        if i >= args.warmup_days and (i - args.warmup_days) % args.retrain_days == 0:
            print("  " + arm.retrain(day), flush=True)
        rows = by_day[day]
        today = frame.loc[rows]
        # Frauds of day D only count from D+1 on, so today's own verdicts cannot change today's features.
        feats = snapshot.features(today, arm.fraud_labels(start, end))
        arm.features[rows] = feats[FEATURE_COLUMNS].to_numpy(dtype="float64")
        if arm.model is not None:
            arm.scores[rows] = arm.score(rows)
            scored = today.assign(score=arm.scores[rows])
            alerts = pick_alerts(arm, scored, day, args)
            arm.caught.update(set(scored.loc[scored["truth"] == 1, "card_key"]) & set(alerts["card_key"]))
            if arm.reviews:
                review(arm, scored, alerts, args.verdict_hours)
        snapshot = snapshot.update(today, arm.fraud_labels(start, end), as_of=end)


def pick_alerts(arm: Arm, scored: pd.DataFrame, day: date, args) -> pd.DataFrame:
    """The day's alert budget: the top-k cards not caught before; in verdicts-sc, cards an analyst
    cleared within ``--suppress-days`` are skipped unless their score rose by ``--suppress-margin``.
    Records the alerts, how many went to recently cleared cards, and what the suppression moved."""
    ranked = ranked_cards(scored[~scored["card_key"].isin(arm.caught)])
    fraud_cards = set(scored.loc[scored["truth"] == 1, "card_key"])
    clearances = pd.concat(arm.clearances) if arm.clearances else pd.DataFrame(columns=["card_key", "cleared_at", "score"])
    cleared = suppressed_by_clearance(ranked, clearances, args.suppress_days, np.inf)  # cleared within N days
    suppressed = suppressed_by_clearance(ranked, clearances, args.suppress_days, args.suppress_margin)
    keep = ~suppressed if arm.suppresses else np.ones(len(ranked), dtype=bool)
    alerts = swept_budget(arm, ranked[keep], scored, day, args.k) if arm.sweeps else ranked[keep].head(args.k)
    if arm.suppresses:
        plain = ranked.head(args.k)
        out = plain[~plain["card_key"].isin(alerts["card_key"])]
        came_in = alerts[~alerts["card_key"].isin(plain["card_key"])]
        arm.suppression.append({"day": day, "out": len(out), "out_fraud": int(out["card_key"].isin(fraud_cards).sum()),
                                "in_fraud": int(came_in["card_key"].isin(fraud_cards).sum())})
    fraud = alerts["card_key"].isin(fraud_cards)
    arm.compromised[day] = int(ranked["card_key"].isin(fraud_cards).sum())
    eligible = ranked[keep]  # rank among the cards it may alert
    left_out = eligible["card_key"].isin(fraud_cards) & ~eligible["card_key"].isin(alerts["card_key"])
    arm.missed_ranks.extend((np.flatnonzero(left_out.to_numpy()) + 1).tolist())
    cleared_recently = alerts["card_key"].map(pd.Series(cleared, index=ranked["card_key"].to_numpy()))
    arm.alerts.append(alerts[["card_key"]].assign(event_date=day, fraud=fraud.to_numpy(),
                                                  cleared_recently=cleared_recently.to_numpy(dtype=bool)))
    cleared_today = alerts.loc[~fraud.to_numpy()]  # an analyst (verdict arms) or nobody (chargebacks) found no fraud
    arm.clearances.append(cleared_today.assign(cleared_at=cleared_today["event_time"] + pd.Timedelta(hours=args.verdict_hours))
                          [["card_key", "cleared_at", "score"]])
    return alerts


def swept_budget(arm: Arm, ranked: pd.DataFrame, scored: pd.DataFrame, day: date, k: int) -> pd.DataFrame:
    """The budget filled with a same-day terminal sweep: a terminal whose fraud becomes known today
    (a chargeback arriving today, or an analyst confirming an alerted card's fraud there) has its
    other cards of the day alerted next, ahead of the lower-scored ones."""
    start, end = midnight(day), midnight(day + timedelta(days=1))
    known = (arm.known_at >= start) & (arm.known_at < end) & (arm.frame["truth"] == 1)
    terminal_cards = scored.groupby("terminal_id")["card_key"].unique()
    fraud_terminals = scored.loc[scored["truth"] == 1].groupby("card_key")["terminal_id"].unique()
    row_of = ranked.set_index("card_key")
    order = list(ranked["card_key"])
    queue, swept_terminals, picked, swept = [], set(), [], set()

    def sweep(terminals) -> None:
        fresh = [t for t in terminals if t not in swept_terminals]
        swept_terminals.update(fresh)
        cards = {c for t in fresh for c in terminal_cards.get(t, ())} & set(row_of.index)
        new = sorted(cards - set(picked) - set(queue), key=lambda c: (-row_of.at[c, "score"], c))  # as ranked_cards
        queue.extend(new)
        swept.update(new)

    sweep(set(arm.frame.loc[known, "terminal_id"]) & set(terminal_cards.index))
    position = 0
    while len(picked) < k and (queue or position < len(order)):
        if queue:
            card = queue.pop(0)
        else:
            card, position = order[position], position + 1
            if card in picked:
                continue
        picked.append(card)
        if arm.reviews and card in fraud_terminals.index:  # the analyst confirms fraud at these terminals
            sweep(fraud_terminals[card])
    in_budget = swept & set(picked)
    arm.swept.append({"day": day, "alerted": len(in_budget), "fraud": len(in_budget & set(fraud_terminals.index))})
    return row_of.loc[picked].reset_index()


def review(arm: Arm, scored: pd.DataFrame, alerts: pd.DataFrame, hours: float) -> None:
    """Analysts investigate each alerted card: its transactions of the day get a verdict
    ``hours`` after the alert (or after the transaction, if later)."""
    alerted = scored.loc[scored["card_key"].isin(alerts["card_key"])]
    alert_time = alerted["card_key"].map(alerts.set_index("card_key")["event_time"])
    verdict_at = np.maximum(alerted["event_time"], alert_time) + pd.Timedelta(hours=hours)
    fraud = alerted["truth"] == 1
    earlier = fraud & ~(arm.known_at[alerted.index] <= verdict_at)  # a label known before stays
    arm.known_at.loc[earlier[earlier].index] = verdict_at[earlier]
    arm.label_type.loc[earlier[earlier].index] = "analyst_confirmed"
    legit = alerted.index[~fraud]
    arm.label_type.loc[legit] = "analyst_legitimate"
    arm.verdict_at.loc[legit] = verdict_at[~fraud]
    arm.verdicts += len(alerted)


def evaluate(frame: pd.DataFrame, arm: Arm, k: int) -> pd.DataFrame:
    """Per day CP@k of the budget the arm actually alerted, AP and card recall. Without suppression
    or sweep the budget is the FDH CP@k's own top-k (checked against ``card_precision_top_k``)."""
    scores = arm.scores
    scored = frame.assign(score=scores, is_fraud=frame["truth"]).loc[~np.isnan(scores)]
    _, per_day = card_precision_top_k(scored, k)
    alerts = pd.concat(arm.alerts).groupby("event_date")["fraud"].sum()
    detected = per_day["day"].map(alerts).fillna(0).astype(int)
    compromised = per_day["day"].map(arm.compromised).fillna(0).astype(int)
    if not (arm.suppresses or arm.sweeps):
        assert (detected == per_day["detected_cards"]).all() and (compromised == per_day["compromised_cards"]).all(), \
            "the arm's budget differs from CP@k's top-k"
    per_day["detected_cards"], per_day["compromised_cards"], per_day["card_precision"] = detected, compromised, detected / k
    ap = {d: average_precision(g["is_fraud"].to_numpy(), g["score"].to_numpy()) for d, g in scored.groupby("event_date")}
    per_day["average_precision"] = per_day["day"].map(ap)
    per_day["card_recall"] = per_day["detected_cards"] / per_day["compromised_cards"].clip(lower=1)
    return per_day


def sweep_reach(frame: pd.DataFrame, frauds: pd.DataFrame, arms: dict[str, Arm], shares: dict) -> None:
    """Upper bound of a same-day terminal sweep (common point of purchase): the compromised cards left
    out of the budget that had a fraud that day at a terminal with a fraud label becoming known that
    same day (by an analyst verdict or a chargeback) - cards a sweep of that terminal would reach."""
    days = frauds["event_date"].nunique()
    for name, arm in arms.items():
        open_, alerted = shares[name]
        missed = frauds.loc[open_ & ~alerted]
        is_fraud = (frame["truth"] == 1).to_numpy() & arm.known_at.notna().to_numpy()
        known = pd.DataFrame({"terminal_id": frame.loc[is_fraud, "terminal_id"],
                              "event_date": arm.known_at[is_fraud].dt.date,
                              "verdict": (arm.label_type[is_fraud] == "analyst_confirmed").to_numpy()})
        hit = missed.merge(known.drop_duplicates(), on=["terminal_id", "event_date"])
        cards = missed.drop_duplicates(["event_date", "card_key"])
        reach = hit.drop_duplicates(["event_date", "card_key"])
        by_verdict = hit.loc[hit["verdict"]].drop_duplicates(["event_date", "card_key"])
        print(f"  {name}: {len(cards):,} compromised cards left out of the budget ({len(cards) / days:.1f} a day); "
              f"a same-day terminal sweep would reach {len(reach):,} ({len(reach) / days:.1f} a day), "
              f"{len(by_verdict):,} of them through a verdict")


def why(frame: pd.DataFrame, arms: dict[str, Arm]) -> None:
    """Where verdicts can act: per scenario, the frauds on cards not caught before that get alerted;
    the terminal frauds whose terminal already had a known fraud (the label-fed features); the same
    day's verdicts the day-aligned windows cannot see yet; and how the arms spend their budgets."""
    base = arms["chargebacks"]
    scored = ~np.isnan(base.scores)
    frauds = frame.loc[scored & (frame["truth"] == 1).to_numpy(), ["event_date", "card_key", "fraud_scenario", "terminal_id"]]
    shares = {}
    for name, arm in arms.items():
        alerts = pd.concat(arm.alerts)
        hits = alerts.merge(frauds.drop_duplicates(["event_date", "card_key"]), on=["event_date", "card_key"])
        first_hit = hits.groupby("card_key")["event_date"].min()  # card blocked after this day
        blocked = frauds["event_date"] > frauds["card_key"].map(first_hit).fillna(date.max)
        alerted = frauds.merge(alerts.assign(hit=1), on=["event_date", "card_key"], how="left")["hit"].notna().to_numpy()
        shares[name] = (~blocked.to_numpy(), alerted)
    sweep_reach(frame, frauds, arms, shares)
    rows = []
    for scenario in sorted(frauds["fraud_scenario"].dropna().unique()):
        mine = (frauds["fraud_scenario"].fillna(0) == scenario).to_numpy(dtype=bool)
        row = [str(scenario), int(mine.sum())]
        for open_, alerted in shares.values():
            row += [int((mine & open_).sum()), f"{(mine & open_ & alerted).sum() / max((mine & open_).sum(), 1):.3f}"]
        rows.append(row)
    print_table("Frauds on cards not caught before, and the share of them alerted, per scenario "
                "(1 amount, 2 terminal, 3 card, 4 drifted card)",
                ["scenario", "frauds", *[f"{h} {name}" for name in arms for h in ("open", "alerted")]], rows)
    terminal = (frame["fraud_scenario"].fillna(0) == 2).to_numpy(dtype=bool) & scored
    column = FEATURE_COLUMNS.index("terminal_fraud_count_recent_28d")
    informed = ", ".join(f"{float((arm.features[terminal, column] > 0).mean()):.3f} {name}" for name, arm in arms.items())
    print(f"\nterminal-compromise frauds scored with a known fraud at their terminal (last 28 days): {informed}")
    for name, arm in arms.items():
        # A fraud at the same terminal on the same day, known (verdict) before this one: counted by no
        # feature, since the terminal windows end at the previous midnight.
        known = frame.loc[(frame["truth"] == 1).to_numpy(), ["terminal_id", "event_date"]].assign(known=arm.known_at)
        first_known = known.groupby(["terminal_id", "event_date"])["known"].min()
        key = pd.MultiIndex.from_frame(frame.loc[terminal, ["terminal_id", "event_date"]])
        same_day = (first_known.reindex(key).to_numpy() < frame.loc[terminal, "event_time"].to_numpy())
        print(f"  {name}: {same_day.mean():.3f} of them had a fraud at that terminal known earlier the same day "
              f"(invisible to the day-aligned windows)")
    print("\nAlert budgets (scored days):")
    base_alerts = pd.concat(base.alerts)
    for name, arm in arms.items():
        alerts = pd.concat(arm.alerts)
        seen = alerts.groupby("card_key")["event_date"].transform("min") < alerts["event_date"]
        overlap = np.mean([len(set(a["card_key"]) & set(b["card_key"])) / max(len(set(a["card_key"]) | set(b["card_key"])), 1)
                           for (_, a), (_, b) in zip(alerts.groupby("event_date"), base_alerts.groupby("event_date"))])
        print(f"  {name}: {seen.mean():.3f} of the alerts on cards already alerted on an earlier day (false positives "
              f"then, not blocked); daily overlap with the chargebacks arm's alerts (Jaccard) {overlap:.3f}; "
              f"{arm.verdicts:,} verdicts; {alerts['cleared_recently'].mean():.3f} on cards alerted without fraud "
              f"(verdict arms: cleared by an analyst) within the last {arm.args.suppress_days:g} days")
        missed = np.array(arm.missed_ranks)
        k = arm.args.k
        print(f"    compromised cards left out of the budget: {len(missed):,}; share ranked within the first "
              f"k+{k // 10}: {(missed <= k + k // 10).mean():.3f}, within 2k: {(missed <= 2 * k).mean():.3f}, "
              f"median rank {np.median(missed):.0f}")
        if arm.sweeps:
            swept = pd.DataFrame(arm.swept)
            print(f"    sweep: {swept['alerted'].sum():,} budget slots went to swept cards "
                  f"({swept['alerted'].mean():.1f} a day), {swept['fraud'].sum():,} of them held a fraud that day")
        if arm.suppresses:
            moved = pd.DataFrame(arm.suppression)
            print(f"    suppression: {moved['out'].sum():,} budget slots freed ({moved['out'].mean():.1f} a day); the "
                  f"suppressed cards held {moved['out_fraud'].sum():,} frauds, the cards that took their slots "
                  f"{moved['in_fraud'].sum():,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--warmup-days", type=int, default=22, help="days before the first model (history only)")
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--terminals", type=int, default=10000)
    parser.add_argument("--k", type=int, default=100, help="daily alert budget (cards)")
    parser.add_argument("--train-days", type=int, default=14, help="matured days in each training window")
    parser.add_argument("--maturity-days", type=int, default=7, help="the platform's label maturity (FRAUD_LABEL_MATURITY_DAYS)")
    parser.add_argument("--retrain-days", type=int, default=7)
    parser.add_argument("--verdict-hours", type=float, default=4.0, help="verdict known this long after the alert")
    parser.add_argument("--label-delay", choices=LABEL_DELAYS, default="uniform",
                        help="simulator chargeback delay: uniform 1..7 days, or fixed 7 days (FDH's delay period)")
    parser.add_argument("--drift-day", type=int, default=None,
                        help="optional concept drift: card compromises from this day index on are scenario 4")
    parser.add_argument("--arms", default="chargebacks,verdicts",
                        help=f"comma-separated, from {ARMS}; the first must be chargebacks (the baseline)")
    parser.add_argument("--suppress-days", type=float, default=7.0,
                        help="verdicts-sc: a card cleared as legitimate is not re-alerted for this many days ...")
    parser.add_argument("--suppress-margin", type=float, default=0.1,
                        help="... unless its score exceeds the highest cleared score by this much")
    parser.add_argument("--feedback-weight", type=float, default=0.5, help="verdicts-fc: alpha of the feedback classifier")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    names = args.arms.split(",")
    if names[0] != "chargebacks" or not set(names) <= set(ARMS) or len(set(names)) != len(names):
        parser.error(f"--arms must start with chargebacks and name distinct arms from {ARMS}")
    if args.days < 60:
        print(f"note: {args.days} days is shorter than the 60-day protocol", flush=True)
    started = time.perf_counter()
    print(f"machine: {machine_line()}", flush=True)
    start = date(2026, 1, 1)
    drift = None if args.drift_day is None else start + timedelta(days=args.drift_day)
    sim = TransactionSimulator(SimulationConfig(start=start, days=args.days, n_customers=args.customers,
                                                n_terminals=args.terminals, seed=args.seed, label_delay=args.label_delay,
                                                drift_start=drift))
    frame = simulated_sandbox_frame(sim).rename(columns={"is_fraud": "truth", "label_known_at": "chargeback_at",
                                                          "label_type": "chargeback_type"})
    days = sorted(frame["event_date"].unique())
    by_day = {d: idx for d, idx in frame.groupby("event_date").groups.items()}
    delay = ((frame["chargeback_at"] - frame["event_time"]) / pd.Timedelta(days=1)).dropna()
    print(f"{len(frame):,} transactions over {len(days)} days, {int(frame['truth'].sum()):,} frauds; k = {args.k}, "
          f"warm-up {args.warmup_days} days, retraining every {args.retrain_days} days on {args.train_days} matured days "
          f"(+ verdicts), maturity {args.maturity_days} days, verdicts after {args.verdict_hours:g} h; chargeback delay "
          f"{args.label_delay}: {delay.min():.1f}..{delay.max():.1f} days, median {delay.median():.1f}; "
          f"drift {'from ' + str(drift) if drift else 'none'}; arms {', '.join(names)}", flush=True)
    per_arm, arms = {}, {}
    for name in names:
        arm_started = time.perf_counter()
        print(f"arm {name}:", flush=True)
        arm = arms[name] = Arm(name, frame, args)
        run_arm(arm, days, by_day, args)
        per_arm[name] = evaluate(frame, arm, args.k).set_index("day")
        print(f"  {name}: {time.perf_counter() - arm_started:.0f} s, {arm.verdicts:,} verdicts, load avg "
              f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    day_index = per_arm["chargebacks"].index
    tables = {name: table.loc[day_index] for name, table in per_arm.items()}
    cols = [("card_precision", f"CP@{args.k}"), ("average_precision", "AP"), ("card_recall", "recall")]
    header = ["day", *[f"{label} {name}" for _, label in cols for name in names]]
    rows = [[str(d), *[f"{tables[name].loc[d, c]:.3f}" for c, _ in cols for name in names]] for d in day_index]
    print_table("Per day", header, rows)
    means = [["mean", *[f"{tables[name][c].mean():.3f}" for c, _ in cols for name in names]]]
    print_table(f"Mean over {len(day_index)} scored days", header, means)
    if drift is not None:
        after = day_index >= drift
        print_table(f"Mean over the {int(after.sum())} scored days from the drift on ({drift})", header,
                    [["mean", *[f"{tables[name].loc[after, c].mean():.3f}" for c, _ in cols for name in names]]])
    base = tables["chargebacks"]
    for name in names[1:]:
        lift = lambda c, mask=slice(None): tables[name].loc[mask, c].mean() / base.loc[mask, c].mean() - 1  # noqa: E731
        extra = f"; from the drift on CP lift {lift('card_precision', after):+.1%}" if drift is not None else ""
        print(f"\n{name}: CP@{args.k} relative lift {lift('card_precision'):+.1%} (target >= +10 %); "
              f"AP lift {lift('average_precision'):+.1%}{extra}", flush=True)
    why(frame, arms)
    print(f"\n{len(day_index)} scored days; {time.perf_counter() - started:.0f} s; load avg at end "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)


if __name__ == "__main__":
    main()
