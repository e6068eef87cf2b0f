"""Time-based train/validation/test splits with a label-delay gap (Fraud Detection Handbook
protocol): a model trained on days up to T is only deployable once their labels are known, so the
days between training and test are left out. One function, used by the sandbox (to record the
splits) and by training (to use them), so both always agree."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import Sequence


@dataclass(frozen=True)
class SplitConfig:
    """The FDH protocol's windows. The defaults are what the sandbox records and what training
    uses unless configured otherwise (a run with other windows logs its own plan in MLflow)."""

    train_days: int | None = 7  # None = every matured day before the delay gap
    validation_days: int = 7
    delay_days: int = 7
    test_days: int = 7


@dataclass(frozen=True)
class TimeSplits:
    train: tuple[date, date] | None
    validation: tuple[date, date] | None
    test: tuple[date, date] | None
    delay_days: int

    def split_of(self, day: date) -> str:
        for name in ("test", "validation", "train"):
            window = getattr(self, name)
            if window and window[0] <= day <= window[1]:
                return name
        return "excluded"

    def as_dict(self) -> dict:
        return {k: ([d.isoformat() for d in v] if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def plan_time_splits(available_days: Sequence[date], config: SplitConfig = SplitConfig()) -> TimeSplits:
    """Test = last ``test_days``; a ``delay_days`` gap; train = the ``train_days`` before the gap.

    ``train`` is exactly the window the final model fits on (``ml.training.plan_training`` uses
    this function), so the sandbox's recorded ``split`` column agrees with training. Model
    selection runs prequential folds inside the days up to the end of ``train`` (recorded in the
    ``fraud_model`` plan), so no separate validation window is recorded: ``validation`` is None.
    """
    days = sorted(set(available_days))
    if not days:
        return TimeSplits(None, None, None, config.delay_days)
    last = days[-1]

    def window(end: date, length: int) -> tuple[date, date] | None:
        start = max(end - timedelta(days=length - 1), days[0])
        return (start, end) if length > 0 and start <= end else None

    test = window(last, config.test_days)
    train_end = (test[0] if test else last + timedelta(days=1)) - timedelta(days=config.delay_days + 1)
    train_len = config.train_days if config.train_days is not None else (train_end - days[0]).days + 1
    train = window(train_end, train_len) if train_end >= days[0] else None
    return TimeSplits(train, None, test, config.delay_days)


@dataclass(frozen=True)
class Fold:
    """One prequential fold: train on ``train`` days, validate on ``validation`` days, with
    ``delay_days`` between them (labels of the last training days must be known at deployment)."""

    train: tuple[date, date]
    validation: tuple[date, date]

    def as_dict(self) -> dict:
        return {"train": [d.isoformat() for d in self.train], "validation": [d.isoformat() for d in self.validation]}


def prequential_folds(
    available_days: Sequence[date],
    end: date,
    *,
    train_days: int | None,
    validation_days: int,
    delay_days: int,
    n_folds: int,
) -> list[Fold]:
    """FDH prequential validation before ``end`` (inclusive): fold ``i`` validates on the
    ``validation_days`` ending ``i * validation_days`` days before ``end`` and trains on the
    ``train_days`` (None = every earlier day) ending ``delay_days`` before that. Folds without full data are skipped; the
    most recent fold comes first."""
    days = set(available_days)
    folds = []
    for i in range(n_folds):
        val_end = end - timedelta(days=i * validation_days)
        val_start = val_end - timedelta(days=validation_days - 1)
        train_end = val_start - timedelta(days=delay_days + 1)
        train_start = train_end - timedelta(days=train_days - 1) if train_days else min(days, default=train_end)
        if train_start > train_end:
            continue
        span = [train_start + timedelta(days=j) for j in range((train_end - train_start).days + 1)]
        span += [val_start + timedelta(days=j) for j in range(validation_days)]
        if all(d in days for d in span):
            folds.append(Fold((train_start, train_end), (val_start, val_end)))
    return folds


def day_range(window: tuple[date, date] | None) -> list[date]:
    """Every day of an inclusive window (empty for None)."""
    if window is None:
        return []
    return [window[0] + timedelta(days=i) for i in range((window[1] - window[0]).days + 1)]
