"""Model quality benchmark on the Fraud Detection Handbook protocol.

Train on 7 days, leave a 7-day label delay, test on the next 7 days with cards already known to be
compromised removed; report AUC ROC, average precision and Card Precision@100 per model variant
(SMOTE, class weighting, no resampling) and training time. Data: the platform's simulator (default,
with warm-up days so 30-day features are mature) or an imported history (``--history PATH``:
Parquet/CSV/pickle in the sandbox schema, or FDH's raw columns TX_DATETIME, CUSTOMER_ID, ...).

Targets (FDH-style simulation, 2 cores): AP >= 0.75, CP@100 >= 0.32, training <= 120 s.

    .venv/bin/python bench/model_quality.py                   # simulator, 70 days
    .venv/bin/python bench/model_quality.py --history data.parquet
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import pandas as pd

from fraud_platform.domain.features import FEATURE_COLUMNS, compute_batch_features
from fraud_platform.domain.splits import SplitConfig
from fraud_platform.ml.evaluation import EvaluationConfig, evaluate_model
from fraud_platform.ml.tracking import TrackingTarget
from fraud_platform.ml.training import TrainingConfig, fit, machine_threads, train_model

TARGETS = {"average_precision": 0.75, "card_precision_at_k": 0.32, "train_seconds": 120.0}
MATRIX_KEYS = ["transaction_id", "event_time", "event_date", "card_key", "is_fraud", "label_known_at"]


def simulated_history(days: int, seed: int, fraud_rate: float | None) -> pd.DataFrame:
    from fraud_platform.domain.simulator import SimulationConfig, TransactionSimulator
    from fraud_platform.ml.datasets import simulated_sandbox_frame

    sim = TransactionSimulator(SimulationConfig(start=date(2026, 1, 1), days=days, seed=seed, fraud_rate=fraud_rate))
    return simulated_sandbox_frame(sim)


def imported_history(path: Path, delay_days: int) -> pd.DataFrame:
    """Sandbox-schema data, or FDH raw transactions (labels assumed known ``delay_days`` later)."""
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    readers = {".parquet": pd.read_parquet, ".csv": pd.read_csv, ".pkl": pd.read_pickle}
    frame = pd.concat([readers[f.suffix](f) for f in files if f.suffix in readers], ignore_index=True)
    if "TX_DATETIME" in frame:  # FDH layout: customer doubles as card, amounts already in one currency
        time_ = pd.to_datetime(frame["TX_DATETIME"], utc=True)
        frame = pd.DataFrame({
            "transaction_id": frame["TRANSACTION_ID"].astype(str), "event_time": time_,
            "customer_key": frame["CUSTOMER_ID"].astype(str), "card_key": frame["CUSTOMER_ID"].astype(str),
            "terminal_id": frame["TERMINAL_ID"].astype(str), "amount_eur": frame["TX_AMOUNT"].astype(float),
            "is_fraud": frame["TX_FRAUD"].astype(int),
        })
        frame["label_known_at"] = (time_ + pd.Timedelta(days=delay_days)).where(frame["is_fraud"] == 1)
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True)
    frame["event_date"] = frame["event_time"].dt.date
    return frame.sort_values("event_time", kind="stable").reset_index(drop=True)


def machine_note() -> str:
    try:
        model = next(l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                     if l.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "unknown cpu"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{platform.node()} | {model} | {machine_threads()} usable cores | load avg (1 min) {load:.1f}"


def table(rows: list[dict]) -> str:
    frame = pd.DataFrame(rows)
    widths = {c: max(len(c), *(len(_fmt(v)) for v in frame[c])) for c in frame.columns}
    line = " | ".join(c.ljust(widths[c]) for c in frame.columns)
    rule = "-+-".join("-" * widths[c] for c in frame.columns)
    body = [" | ".join(_fmt(v).ljust(widths[c]) for c, v in zip(frame.columns, row)) for row in frame.itertuples(index=False)]
    return "\n".join([line, rule, *body])


def _fmt(value) -> str:
    if isinstance(value, float):
        return "" if value != value else f"{value:.3f}"  # NaN: cell not applicable
    return str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--history", type=Path, help="imported history instead of the simulator")
    parser.add_argument("--days", type=int, default=70, help="simulated days (>= 37 warm-up + 42 for 2 folds)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--fraud-rate", type=float, default=None, help="simulator fraud rate (default: FDH)")
    parser.add_argument("--budget-seconds", type=float, default=90.0, help="search wall-clock budget")
    parser.add_argument("--candidates", type=int, default=4, help="sampled hyperparameter sets per variant")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument("--tracking-uri", help="MLflow store (default: a throwaway SQLite file)")
    args = parser.parse_args()

    split = SplitConfig(train_days=7, validation_days=7, delay_days=7, test_days=7)
    print(f"machine: {machine_note()}")
    tick = time.monotonic()
    history = imported_history(args.history, split.delay_days) if args.history else simulated_history(
        args.days, args.seed, args.fraud_rate)
    source = str(args.history) if args.history else f"simulator ({args.days} days, seed {args.seed})"
    print(f"data: {source}: {len(history):,} transactions, fraud rate {history['is_fraud'].mean():.3%}, "
          f"{history['event_date'].nunique()} days, prepared in {time.monotonic() - tick:.1f}s")

    tick = time.monotonic()
    features = compute_batch_features(history)
    matrix = pd.concat([history[MATRIX_KEYS], features[FEATURE_COLUMNS]], axis=1)
    print(f"features: {len(FEATURE_COLUMNS)} columns in {time.monotonic() - tick:.1f}s")

    config = TrainingConfig(split=split, n_folds=args.folds, n_candidates=args.candidates,
                            budget_seconds=args.budget_seconds)
    workdir = Path(tempfile.mkdtemp(prefix="fraud-bench-"))
    TrackingTarget(args.tracking_uri or f"sqlite:///{workdir / 'mlflow.db'}", (workdir / "artifacts").as_uri(),
                   experiment_name="bench_model_quality").activate()
    cpu = time.process_time()
    result = train_model(matrix, config, run_name="bench")
    cpu = time.process_time() - cpu  # all threads: independent of other load on a shared machine
    plan = result.plan
    window = lambda w: f"{w[0]} .. {w[1]}"  # noqa: E731
    print(f"train {window(plan.final_train)} ({result.train_rows:,} tx, {result.train_frauds} frauds) | "
          f"delay {split.delay_days} d | test {window(plan.splits.test)} | folds: "
          + "; ".join(f"train {window(f.train)} val {window(f.validation)}" for f in plan.folds))
    print(f"search + final fit (train_model, incl. MLflow logging): {result.train_seconds:.1f}s wall, "
          f"{cpu:.1f}s CPU; "
          f"selected {result.variant} {result.params}")

    evaluation_config = EvaluationConfig(daily_alert_budget=args.top_k, top_k=args.top_k)
    rows = []
    trials = result.trials
    for variant in config.variants:
        mine = trials[trials["variant"] == variant]
        if mine.empty:
            rows.append({"variant": variant, "note": "not reached within budget"})
            continue
        best = mine.sort_values(["val_ap_fold0"], ascending=False).iloc[0]
        params = {k: (int(best[k]) if float(best[k]).is_integer() else float(best[k])) for k in config.search_space}
        tick = time.monotonic()
        model = fit(matrix, plan.final_train, variant, params, config)
        fit_seconds = time.monotonic() - tick
        m = evaluate_model(model, FEATURE_COLUMNS, matrix, plan.splits.test, evaluation_config,
                           known_since=plan.final_train[0]).metrics
        rows.append({
            "variant": variant + (" *" if variant == result.variant and params == result.params else ""),
            "val_AP": float(best["val_ap_fold0"]),
            "test_AUC": m["auc_roc"], "test_AP": m["average_precision"], f"CP@{args.top_k}": m["card_precision_at_k"],
            "fit_s": fit_seconds,
            "params": ",".join(f"{k}={v}" for k, v in params.items()),
        })
    print()
    print(table(rows))
    chosen = evaluate_model(result.model, FEATURE_COLUMNS, matrix, plan.splits.test, evaluation_config,
                            known_since=plan.final_train[0])
    m = chosen.metrics
    print()
    print(f"selected model on test: AUC {m['auc_roc']:.3f} | AP {m['average_precision']:.3f} "
          f"(target {TARGETS['average_precision']}) | CP@{args.top_k} {m['card_precision_at_k']:.3f} "
          f"(target {TARGETS['card_precision_at_k']}) | training {result.train_seconds:.0f}s "
          f"(target {TARGETS['train_seconds']:.0f}s) | test rows {chosen.test_rows:,}, "
          f"{chosen.removed_known_compromised:,} removed as known compromised")
    top = chosen.importance.head(8)
    print("top features (gain share): " + ", ".join(f"{f} {s:.2f}" for f, s in zip(top["feature"], top["share"])))


if __name__ == "__main__":
    main()
