"""Prequential folds and the training plan keep the label-delay gap (FDH protocol)."""

from __future__ import annotations

from datetime import date, timedelta

from fraud_platform.domain.splits import SplitConfig, prequential_folds
from fraud_platform.ml.training import TrainingConfig, plan_training

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
