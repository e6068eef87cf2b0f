"""Prequential folds and the training plan keep the label-delay gap (FDH protocol)."""

from __future__ import annotations

import os
from datetime import date, timedelta

import pandas as pd

from fraud_platform.domain.splits import Fold, SplitConfig, prequential_folds
from fraud_platform.ml.training import TrainingConfig, free_threads, plan_training, validation_rows

DAYS = [date(2026, 1, 1) + timedelta(days=i) for i in range(70)]


def test_prequential_folds_step_back_with_a_delay_gap():
    folds = prequential_folds(DAYS, date(2026, 2, 25), train_days=7, validation_days=7, delay_days=7, n_folds=3)
    assert [f.validation for f in folds] == [
        (date(2026, 2, 19), date(2026, 2, 25)), (date(2026, 2, 12), date(2026, 2, 18)), (date(2026, 2, 5), date(2026, 2, 11))]
    for fold in folds:
        assert (fold.validation[0] - fold.train[1]).days == 8  # 7 delay days in between
        assert (fold.train[1] - fold.train[0]).days == 6
    # Folds that would need days before the data starts are skipped.
    assert len(prequential_folds(DAYS, date(2026, 1, 25), train_days=7, validation_days=7, delay_days=7, n_folds=3)) == 1


def test_training_plan_trains_on_the_days_deployable_before_the_test_window():
    plan = plan_training(DAYS, TrainingConfig(split=SplitConfig(7, 7, 7, 7)))
    assert plan.splits.test == (date(2026, 3, 5), date(2026, 3, 11))
    assert plan.final_train == (date(2026, 2, 19), date(2026, 2, 25))
    assert plan.folds[0].validation == plan.final_train  # selection ends where the final training ends
    # Short history: one fold training on every day before its delay gap.
    short = plan_training(DAYS[:30], TrainingConfig(split=SplitConfig(7, 7, 7, 7)))
    assert len(short.folds) == 1 and short.folds[0].train[0] == DAYS[0]


def test_recorded_sandbox_split_is_the_window_training_uses():
    from fraud_platform.domain.splits import plan_time_splits

    config = TrainingConfig(split=SplitConfig(7, 7, 7, 7))
    recorded = plan_time_splits(DAYS, config.split)
    plan = plan_training(DAYS, config)
    assert recorded.train == plan.final_train and recorded.test == plan.splits.test
    assert recorded.validation is None  # selection uses prequential folds, recorded in the training plan
    assert [d for d in DAYS if recorded.split_of(d) == "train"] == [
        plan.final_train[0] + timedelta(days=i) for i in range(7)]


def test_validation_folds_drop_cards_known_compromised_like_the_test_window():
    t = lambda day, hour=12: pd.Timestamp(2026, 1, day, hour, tz="UTC")  # noqa: E731
    rows = [  # (event_time, card, is_fraud, label_known_at)
        (t(3), "c1", 1, t(5)),  # known during training: c1 is blocked in validation
        (t(16), "c1", 0, pd.NaT),
        (t(16), "c2", 1, t(18)),  # c2's fraud becomes known on the 18th ...
        (t(17), "c2", 1, pd.NaT),  # ... so the 17th is still scored
        (t(19), "c2", 0, pd.NaT),  # ... and the 19th is not
        (t(20), "c3", 0, pd.NaT),
    ]
    frame = pd.DataFrame(rows, columns=["event_time", "card_key", "is_fraud", "label_known_at"])
    frame["event_date"] = frame["event_time"].dt.date
    fold = Fold((date(2026, 1, 1), date(2026, 1, 7)), (date(2026, 1, 15), date(2026, 1, 21)))
    kept = validation_rows(frame, fold)
    assert list(zip(kept["card_key"], kept["event_time"].dt.day)) == [("c2", 16), ("c2", 17), ("c3", 20)]
    # Data without cards or labels (crafted matrices): every validation row.
    assert len(validation_rows(frame.drop(columns=["card_key"]), fold)) == 5


def test_threads_leave_out_cores_other_processes_keep_busy(monkeypatch):
    from fraud_platform.ml import training

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    busy = {"idle": 0.2, "one other process": 1.0, "overloaded": 15.0, "no /proc/stat": None}
    threads = {}
    for name, cores in busy.items():
        monkeypatch.setattr(training, "busy_cores", lambda cores=cores: cores)
        threads[name] = free_threads()
    assert threads == {"idle": 4, "one other process": 3, "overloaded": 1, "no /proc/stat": 4}
    measured = training.busy_cores(0.05)  # the real sampler on this machine: a share of its cores
    assert measured is not None and 0.0 <= measured <= (os.cpu_count() or 1)
    assert TrainingConfig(n_jobs=2).threads == 2  # an explicit setting wins
