"""Online/offline parity of the streaming pipelines, measured (not a test).

Simulates >= 60 days with labels arriving on their delay, trains a model on the first part with
the project's training code (``fraud_platform.ml.training.fit``), registers it as the champion in
a SQLite MLflow registry, materialises the batch snapshot as of the replay start into the embedded
Redis online store, then replays the last >= 14 days through the real streaming jobs over the
embedded broker:

* ``python -m spark_streaming features`` (Spark) consumes the ``transactions`` and ``labels``
  topics and applies them to the store;
* ``python -m spark_streaming`` (Spark) consumes the transactions, reads their features from the
  store in its executor tasks, scores them with the champion and writes the lake's ``scored/``
  zone, which keeps the features each row was scored with.

The replay runs in event-time windows (``--window-minutes``), in lock step: each window's labels
(at their ``known_at``) and transactions (at their ``event_time``) are produced, in time order, to
the feature pipeline's topics; once its log shows it applied them, the same transactions are
produced to the scorer's topic and the bench waits until they are scored. The two jobs read their
own copy of the transactions so that this order is exact (in a live deployment both read one topic
and the feature pipeline is ahead or behind by about its trigger interval). ``--order scorer-first``
swaps the stages: the store then lacks the window being scored (its labels, and transactions
other than the earlier ones of the scoring task's own Kafka partition, which the lookup counts).

A label known inside the window is already in the store when an earlier transaction of the same
window is scored: the store counts a label only for transactions after its ``known_at``, exactly
like the batch features, so this order is exact whatever the window (up to a day: the store keeps
exact events for the open days only). Prints

  (a) per feature, the share of replayed rows whose online value (the scored zone) equals
      ``compute_batch_features`` over the same history with only the labels known before each
      transaction (within 1e-9), and which rows differ;
  (b) AUC, AP and CP@100 of the streamed scores vs the offline scores of the same model on the
      same transactions;
  (c) Redis ``used_memory`` per 100k entities and bytes per entity after the replay.

Targets: >= 99.9 % of rows equal on every feature; |AP online - AP offline| <= 0.01.

    .venv/bin/python bench/online_parity.py                                   # 62 days, 14 replayed
    .venv/bin/python bench/online_parity.py --days 24 --replay-days 2 --customers 500 --terminals 1000  # quick
    .venv/bin/python bench/online_parity.py --in-process    # no Spark, no broker: the pipelines' task code in this process

``--in-process`` replays 5-minute micro-batches through the same executor functions (validation,
processed rows, store lookups and writes) in this process, lookup before apply: minutes instead of
Spark micro-batches, a quick check of the store's semantics only.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _machine import machine_line  # noqa: E402
from _stack import LogCounter, bench_home, embedded_services, features_command, load1, register_champion, scorer_command, spawn, stop_worker  # noqa: E402

EVENT_COLUMNS = ["transaction_id", "event_time", "customer_key", "terminal_id", "amount_eur"]
PARAMS = {"n_estimators": 150, "max_depth": 5, "learning_rate": 0.1}
TOPICS = {"features_tx": "parity-tx-features", "labels": "parity-labels", "scorer_tx": "parity-tx-scorer",
          "predictions": "parity-predictions", "dlq": "parity-tx-scorer.dlq"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=62)
    parser.add_argument("--replay-days", type=int, default=14)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--terminals", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--window-minutes", type=float, default=60.0, help="event time per lock-step window (<= 1 day)")
    parser.add_argument("--order", choices=["features-first", "scorer-first"], default="features-first")
    parser.add_argument("--partitions", type=int, default=2, help="partitions per topic (= tasks per micro-batch)")
    parser.add_argument("--trigger-seconds", type=float, default=0.2, help="the jobs' trigger interval")
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument("--lag-seconds", type=float, default=2.0, help="live feature-pipeline lag whose exposure (a') is counted")
    parser.add_argument("--in-process", action="store_true", help="no Spark/broker: the task code in this process (5-min batches)")
    args = parser.parse_args()
    if not 0 < args.window_minutes <= 1440:
        parser.error("--window-minutes must be in (0, 1440]: the store keeps exact events of the open days only")
    protocol = args.days >= 60 and args.replay_days >= 14
    home = bench_home("fraud-parity-", args.partitions, store_prefix="parity:")
    started = time.monotonic()
    print(f"machine: {machine_line()}")
    if not protocol:
        print(f"NOTE: {args.days} days / {args.replay_days} replayed is below the protocol (>= 60 / >= 14): a development run")

    tick = time.monotonic()
    from fraud_platform.domain.features import FEATURE_COLUMNS, FeatureSnapshot, compute_batch_features
    from fraud_platform.domain.simulator import SimulationConfig, TransactionSimulator
    from fraud_platform.ml.datasets import simulated_sandbox_frame
    from fraud_platform.ml.training import Candidate, TrainingConfig, fit

    simulator = TransactionSimulator(SimulationConfig(
        start=date(2026, 1, 1), days=args.days, n_customers=args.customers, n_terminals=args.terminals, seed=args.seed,
    ))
    frame = simulated_sandbox_frame(simulator)
    replay_start = pd.Timestamp(simulator.config.start, tz="UTC") + pd.Timedelta(days=args.days - args.replay_days)
    replay = frame[frame["event_time"] >= replay_start]
    print(f"data: {len(frame):,} transactions over {args.days} days ({frame['is_fraud'].mean():.2%} fraud), replaying "
          f"{len(replay):,} from {replay_start.date()} ({time.monotonic() - tick:.0f}s)")

    # Offline: the batch features (labels known before each transaction) and a model trained before the replay.
    tick = time.monotonic()
    offline = compute_batch_features(frame)
    matrix = pd.concat([frame[["transaction_id", "event_time", "event_date", "card_key", "is_fraud"]], offline[FEATURE_COLUMNS]], axis=1)
    config = TrainingConfig()
    train_end = (replay_start - pd.Timedelta(days=config.split.delay_days + 1)).date()
    train_window = (train_end - pd.Timedelta(days=13).to_pytimedelta(), train_end)
    model = fit(matrix, train_window, Candidate("xgboost", "class_weight", PARAMS), config)
    print(f"offline features + training on {train_window[0]} .. {train_window[1]}: {time.monotonic() - tick:.0f}s")
    reference = offline.loc[replay.index].set_index("transaction_id")

    from fraud_platform.infra.online_store import OnlineFeatureStore
    from fraud_platform.settings import OnlineStoreSettings

    with embedded_services():
        store = OnlineFeatureStore.from_settings(OnlineStoreSettings.from_env())
        try:
            empty_memory = store.used_memory()
            tick = time.monotonic()
            before = frame[frame["event_time"] < replay_start]
            snapshot = FeatureSnapshot.build(before, as_of=replay_start)
            materialised = store.materialise(snapshot, transactions=before)
            print(f"materialised snapshot {snapshot.version}: {materialised['customers_written']:,} customers, "
                  f"{materialised['terminals_written']:,} terminals, {materialised['transactions_indexed']:,} indexed "
                  f"({time.monotonic() - tick:.0f}s)")
            tx, labels = _replay_events(simulator, replay_start)
            tick = time.monotonic()
            if args.in_process:
                mode = "in-process (task code in this process, no Spark, no broker; 5-min batches, lookup before apply)"
                online = _replay_in_process(store, tx, labels, replay_start)
            else:
                mode = f"Spark feature pipeline + Spark scorer over the embedded broker, {args.window_minutes:g}-min windows, {args.order}"
                register_champion(model, FEATURE_COLUMNS, (home / "artifacts").as_uri())
                online = _replay_streaming(args, home, tx, labels, replay_start)
            print(f"replay ({mode}): {len(online):,} rows scored/looked up in {time.monotonic() - tick:.0f}s, "
                  f"load average now {load1():.2f}")
            missing = reference.index.difference(online.index)
            if len(missing):
                print(f"WARNING: {len(missing):,} replayed transactions have no online row (e.g. {list(missing[:3])})")
            online = online.reindex(reference.index)
            _print_parity(online, reference, replay)
            _print_lag_exposure(frame, replay, args.lag_seconds)
            _print_scores(model, replay, online, reference, args.top_k)
            _print_memory(store, empty_memory)
        finally:
            store.close()
    print(f"\ntotal wall {time.monotonic() - started:.0f}s; load average at the end {', '.join(f'{x:.2f}' for x in os.getloadavg())}; home {home}")


def _replay_events(simulator, replay_start: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The replay window's transactions (event-time order) and the labels that become known in it
    (known_at order), as the simulator emits them to Kafka."""
    end = pd.Timestamp(simulator.config.end, tz="UTC")
    days = [d for d in simulator.days() if pd.Timestamp(d, tz="UTC") >= replay_start]
    tx = pd.concat([simulator.transactions_for_day(d) for d in days], ignore_index=True)
    labels = simulator.labels_for_window(replay_start.to_pydatetime(), end.to_pydatetime()).reset_index(drop=True)
    return tx, labels


def _windows(times: pd.Series, start: pd.Timestamp, minutes: float) -> np.ndarray:
    return ((pd.to_datetime(times, utc=True) - start) // pd.Timedelta(minutes=minutes)).to_numpy()


def _replay_streaming(args, home: Path, tx: pd.DataFrame, labels: pd.DataFrame, replay_start: pd.Timestamp) -> pd.DataFrame:
    """Lock-step replay through both Spark jobs; returns the scored zone (transaction_id index)."""
    from fraud_platform.domain.simulator import encode_labels, encode_transactions
    from fraud_platform.infra.kafka import ensure_topics, make_producer
    from fraud_platform.settings import KafkaSettings

    kafka = KafkaSettings.from_env()
    ensure_topics(kafka, list(TOPICS.values()), partitions=args.partitions)
    features_env = {**os.environ, "FRAUD_TOPIC_TRANSACTIONS": TOPICS["features_tx"], "FRAUD_TOPIC_LABELS": TOPICS["labels"],
                    "FRAUD_FEATURES_CHECKPOINT": str(home / "features-checkpoint")}
    lake = home / "lake"
    scorer_env = {**os.environ, "FRAUD_TOPIC_TRANSACTIONS": TOPICS["scorer_tx"], "FRAUD_TOPIC_TRANSACTIONS_DLQ": TOPICS["dlq"],
                  "FRAUD_TOPIC_PREDICTIONS": TOPICS["predictions"], "FRAUD_STREAM_CHECKPOINT": str(home / "scorer-checkpoint"),
                  "FRAUD_LAKE_ROOT": str(lake), "FRAUD_STREAM_ALERTS_DUCKDB_PATH": str(home / "alerts.duckdb")}
    features = spawn(features_command(args.trigger_seconds), home / "features.log", features_env)
    scorer = spawn(scorer_command(args.trigger_seconds), home / "scorer.log", scorer_env)
    applied = LogCounter(home / "features.log", r"([\w.-]+): (\d+) in,", features)
    scored = LogCounter(home / "scorer.log", r"batch \d+: (\d+) in = ", scorer)
    producer = make_producer(kafka, **{"linger.ms": 5})

    tx_pairs, label_pairs = encode_transactions(tx), encode_labels(labels)
    tx_window = _windows(tx["event_time"], replay_start, args.window_minutes)
    label_window = _windows(labels["known_at"], replay_start, args.window_minutes)
    # One sequence in time order: each label at its known_at, each transaction at its event time.
    events = pd.DataFrame({
        "time": pd.concat([pd.to_datetime(tx["event_time"], utc=True), pd.to_datetime(labels["known_at"], utc=True)], ignore_index=True),
        "kind": ["tx"] * len(tx) + ["label"] * len(labels),
        "row": np.r_[np.arange(len(tx)), np.arange(len(labels))],
        "window": np.r_[tx_window, label_window],
    }).sort_values(["time", "kind"], kind="stable")
    expected_features = {TOPICS["features_tx"]: 0, TOPICS["labels"]: 0}
    expected_scored = 0

    def produce(topic: str, pairs) -> None:
        for key, value in pairs:
            while True:
                try:
                    producer.produce(topic, key=key, value=value)
                    break
                except BufferError:
                    producer.poll(0.05)

    def feature_stage(window: pd.DataFrame) -> None:
        for _, rows in window.groupby((window["kind"] != window["kind"].shift()).cumsum()):
            pairs = tx_pairs if rows["kind"].iloc[0] == "tx" else label_pairs
            topic = TOPICS["features_tx"] if rows["kind"].iloc[0] == "tx" else TOPICS["labels"]
            produce(topic, (pairs[i] for i in rows["row"]))
            expected_features[topic] += len(rows)
        producer.flush(60)
        applied.wait_for({t: n for t, n in expected_features.items() if n})

    def scorer_stage(window: pd.DataFrame) -> None:
        nonlocal expected_scored
        rows = window.loc[window["kind"] == "tx", "row"]
        if len(rows):
            produce(TOPICS["scorer_tx"], (tx_pairs[i] for i in rows))
            expected_scored += len(rows)
            producer.flush(60)
            scored.wait_for({"": expected_scored})

    stages = (feature_stage, scorer_stage) if args.order == "features-first" else (scorer_stage, feature_stage)
    windows = list(events.groupby("window", sort=True))
    tick = time.monotonic()
    try:
        for n, (_, window) in enumerate(windows, 1):
            for stage in stages:
                stage(window)
            if n % max(1, len(windows) // 20) == 0:
                print(f"  window {n:,}/{len(windows):,}: {expected_scored:,} scored, {expected_features[TOPICS['labels']]:,} labels "
                      f"({time.monotonic() - tick:.0f}s, load {load1():.2f})", flush=True)
    finally:
        producer.close()
        stop_worker(scorer)
        stop_worker(features)
    feature_totals = applied.refresh()
    print(f"{len(windows):,} windows; feature pipeline totals {feature_totals}; scorer {scored.refresh()} in")
    files = sorted((lake / "scored").rglob("*.parquet"))
    zone = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    return zone.drop_duplicates("transaction_id", keep="last").set_index("transaction_id")


def _replay_in_process(store, tx: pd.DataFrame, labels: pd.DataFrame, replay_start: pd.Timestamp, window_minutes: float = 5.0) -> pd.DataFrame:
    """5-minute batches through the pipelines' task functions in this process: look up, then apply
    the batch and the labels known during it (the store learns a label at the end of its batch)."""
    from fraud_platform.domain.simulator import encode_labels, encode_transactions
    from spark_streaming.feature_pipeline import label_rows, transaction_rows

    tx_values = np.asarray([v for _, v in encode_transactions(tx)], dtype=object)
    label_values = np.asarray([v for _, v in encode_labels(labels)], dtype=object)
    tx_slot = _windows(tx["event_time"], replay_start, window_minutes)
    label_slot = _windows(labels["known_at"], replay_start, window_minutes)
    last = int(max(tx_slot.max(), label_slot.max() if len(label_slot) else 0))
    tx_bounds = np.searchsorted(tx_slot, np.arange(last + 2))
    label_bounds = np.searchsorted(label_slot, np.arange(last + 2))
    looked_up = []
    for slot in range(last + 1):
        rows = transaction_rows(list(tx_values[tx_bounds[slot]:tx_bounds[slot + 1]]))
        if len(rows):
            looked_up.append(store.features(rows[EVENT_COLUMNS]))
            store.apply_transactions(rows[EVENT_COLUMNS])
        known = label_rows(list(label_values[label_bounds[slot]:label_bounds[slot + 1]]))
        if len(known):
            store.apply_labels(known)
    online = pd.concat(looked_up, ignore_index=True).set_index("transaction_id")
    return online.assign(score=np.nan)


def _print_parity(online: pd.DataFrame, reference: pd.DataFrame, replay: pd.DataFrame) -> None:
    from fraud_platform.domain.features import FEATURE_COLUMNS

    values = online[FEATURE_COLUMNS].to_numpy(dtype="float64")
    expected = reference[FEATURE_COLUMNS].to_numpy(dtype="float64")
    equal = np.isclose(values, expected, rtol=0, atol=1e-9) | (np.isnan(values) & np.isnan(expected))
    shares = pd.Series(equal.mean(axis=0), index=FEATURE_COLUMNS)
    print(f"\n(a) {len(online):,} rows: online value (scored zone: what the scorer scored with; --in-process: the lookups) vs compute_batch_features "
          "(labels known before each transaction), within 1e-9")
    print(f"{'feature':<36} {'equal %':>9}  {'differing rows':>14}")
    for feature, share in shares.items():
        print(f"{feature:<36} {share * 100:>8.3f}%  {int((~equal[:, FEATURE_COLUMNS.index(feature)]).sum()):>14,}")
    worst = shares.min()
    print(f"worst feature {shares.idxmin()} {worst * 100:.3f}% (target >= 99.9%: {'met' if worst >= 0.999 else 'NOT met'}); "
          f"rows equal on every feature {equal.all(axis=1).mean() * 100:.3f}% "
          f"(target >= 99.9%: {'met' if equal.all(axis=1).mean() >= 0.999 else 'NOT met'})")
    differing = np.flatnonzero(~equal.all(axis=1))
    if len(differing):
        times = replay.set_index("transaction_id")["event_time"]
        print(f"first differing rows (of {len(differing):,}):")
        for i in differing[:8]:
            tx_id = online.index[i]
            cols = [FEATURE_COLUMNS[j] for j in np.flatnonzero(~equal[i])]
            detail = ", ".join(f"{c} online {values[i, FEATURE_COLUMNS.index(c)]:.6g} offline {expected[i, FEATURE_COLUMNS.index(c)]:.6g}" for c in cols[:4])
            print(f"  {tx_id} at {times.get(tx_id)}: {detail}{' ...' if len(cols) > 4 else ''}")


def _print_lag_exposure(frame: pd.DataFrame, replay: pd.DataFrame, lag_seconds: float) -> None:
    """Replayed rows a live feature pipeline running ``lag_seconds`` behind the scorer could change
    (the lock-step order rules this out): the customer's previous transaction, a fraud label at the
    terminal becoming known, or the terminal's previous-day transaction (day windows close at
    midnight), within the lag before the transaction. An upper bound: not every such row differs."""
    lag = pd.Timedelta(seconds=lag_seconds)
    times = pd.to_datetime(frame["event_time"], utc=True).astype("datetime64[ns, UTC]")
    events = frame[["transaction_id", "customer_key", "terminal_id"]].assign(event_time=times)
    in_replay = events.index.isin(replay.index)
    previous = events.sort_values(["customer_key", "event_time"]).groupby("customer_key")["event_time"].shift().reindex(events.index)
    customer = ((events["event_time"] - previous) <= lag) & in_replay
    previous = events.sort_values(["terminal_id", "event_time"]).groupby("terminal_id")["event_time"].shift().reindex(events.index)
    terminal = ((events["event_time"] - previous) <= lag) & (previous.dt.floor("D") < events["event_time"].dt.floor("D")) & in_replay
    frauds = frame.loc[frame["label_known_at"].notna(), ["terminal_id", "label_known_at"]]
    frauds = frauds.assign(known=pd.to_datetime(frauds["label_known_at"], utc=True).astype("datetime64[ns, UTC]"))
    found = pd.merge_asof(events[in_replay].sort_values("event_time"), frauds[["terminal_id", "known"]].sort_values("known"),
                          left_on="event_time", right_on="known", by="terminal_id", direction="backward", tolerance=lag)
    label = events.index.isin(events[in_replay].sort_values("event_time").index[found["known"].notna().to_numpy()])
    exposed = customer | terminal | label
    print(f"\n(a') exposure to a live lag of {lag_seconds:g}s (feature pipeline behind the scorer; ruled out by the lock step): "
          f"at most {int(exposed.sum()):,} rows ({exposed.sum() / in_replay.sum() * 100:.3f}%) could differ: "
          f"{int(customer.sum()):,} with the customer's previous transaction, {int(label.sum()):,} with a terminal fraud label "
          f"becoming known, {int(terminal.sum()):,} with the terminal's previous-day transaction, within {lag_seconds:g}s before")


def _print_scores(model, replay: pd.DataFrame, online: pd.DataFrame, reference: pd.DataFrame, top_k: int) -> None:
    """The streamed scores (the scored zone's ``score``) against the same model on the offline
    features; with ``--in-process`` (no scorer) the model scores the looked-up features."""
    from fraud_platform.domain.features import FEATURE_COLUMNS
    from fraud_platform.ml.evaluation import EvaluationConfig, evaluate_scores
    from fraud_platform.ml.training import predict_scores

    config = EvaluationConfig(daily_alert_budget=top_k, top_k=top_k)
    test = replay[["transaction_id", "event_date", "card_key", "is_fraud"]].reset_index(drop=True)
    offline_scores = predict_scores(model, reference.reset_index(), FEATURE_COLUMNS)
    streamed = online["score"].to_numpy(dtype="float64")
    if np.isnan(streamed).all():
        streamed = predict_scores(model, online.reset_index(), FEATURE_COLUMNS)
    scored = ~np.isnan(streamed)
    results = {name: evaluate_scores(test[scored].reset_index(drop=True), scores[scored], config).metrics
               for name, scores in (("online", streamed), ("offline", offline_scores))}
    print(f"\n(b) the same model on the same {int(scored.sum()):,} replayed transactions ({int(test['is_fraud'][scored].sum())} frauds)")
    print(f"{'scores':<8} {'AUC':>7} {'AP':>7} {'CP@' + str(top_k):>7}")
    for name, m in results.items():
        print(f"{name:<8} {m['auc_roc']:>7.4f} {m['average_precision']:>7.4f} {m['card_precision_at_k']:>7.4f}")
    gap = abs(results["online"]["average_precision"] - results["offline"]["average_precision"])
    delta = np.abs(streamed[scored] - offline_scores[scored])
    print(f"|AP online - AP offline| = {gap:.4f} (target <= 0.01: {'met' if gap <= 0.01 else 'NOT met'}); "
          f"|score online - offline|: max {delta.max():.2e}, rows above 1e-6: {int((delta > 1e-6).sum()):,}")


def _print_memory(store, empty_memory: int) -> None:
    """used_memory above an empty server, and MEMORY USAGE per kind of key (entities vs the
    transaction index, which scales with throughput x its TTL, not with entities)."""
    client = store.client()
    used = store.used_memory() - empty_memory
    kinds = {"c": "customer hashes", "t": "terminal hashes", "x": "transaction index", "l": "pending labels", "d": "claims"}
    count, total = {}, {}
    for code in kinds:
        keys = list(client.scan_iter(match=f"{store.prefix}{code}:*", count=10_000))
        sample = keys[:: max(1, len(keys) // 5000)]  # MEMORY USAGE on up to ~5,000 keys per kind
        pipe = client.pipeline(transaction=False)
        for key in sample:
            pipe.memory_usage(key, samples=0)
        sizes = [s or 0 for s in pipe.execute()] if sample else []
        count[code], total[code] = len(keys), (np.mean(sizes) * len(keys) if sizes else 0.0)
    entities = count["c"] + count["t"]
    entity_bytes = total["c"] + total["t"]
    print(f"\n(c) store after the replay: used_memory {used / 2**20:.1f} MiB above an empty server")
    print(f"{'keys':<20} {'count':>9} {'bytes/key':>10} {'MiB':>7}")
    for code, name in kinds.items():
        if count[code]:
            print(f"{name:<20} {count[code]:>9,} {total[code] / count[code]:>10,.0f} {total[code] / 2**20:>7.1f}")
    print(f"entity state: {entity_bytes / entities:,.0f} bytes per entity (customers and terminals), "
          f"{entity_bytes / entities * 100_000 / 2**20:.1f} MiB per 100k entities; "
          f"used_memory per 100k entities, everything included: {used / entities * 100_000 / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
