"""Streaming scorer benchmark: sustained throughput and end-to-end latency at fixed rates and at the
maximum rate, for the Spark job (``python -m spark_streaming``, scoring in its executor tasks) and,
on the same workload, a plain-Python confluent-kafka consume -> score -> produce loop running the
same task code in one process; then scale-out on a backlog (1 vs 2 executor cores) with the
driver's CPU per record, and the scorer's RSS at the start and end of the run.

    .venv/bin/python bench/streaming.py [--duration 60] [--rates 5000,max] [--backlog 2000000] [--partitions 2]
    .venv/bin/python bench/streaming.py --soak-minutes 30 --rates "" --backlog 0   # RSS over a long run

Everything is real and local: embedded broker, embedded Redis online store materialised with the
simulated history (>= 50k customers, >= 10k terminals) that every scored transaction reads and
claims its id in, SQLite MLflow registry with an XGBoost champion trained on the simulated data,
DuckDB alert store, local lake, Spark local[N]. Latency per transaction = Kafka timestamp of its
prediction - its event_time (stamped when the producer sends it).
Targets (2 cores): throughput >= 1.0x the plain loop, p99 <= 500 ms at 5k tx/s, 2 cores >= 1.6x 1 core
on a backlog, RSS flat over a long run. Every row carries the 1-minute load average at its end: other
processes on the machine share the cores; each rate phase also gets the CPU its scorer (driver, JVM,
workers), the broker, the online store and the producer used, and the machine's total.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _machine import cpu_seconds_by_process, machine_line  # noqa: E402
from _stack import bench_home, embedded_services, load1, register_champion, spawn, stop_worker  # noqa: E402
from _stack import scorer_command as spark_scorer_command  # noqa: E402

TICK = 0.05


def simulated_pool(days: int = 2, customers: int = 60000, terminals: int = 10000) -> pd.DataFrame:
    from fraud_platform.domain.simulator import SimulationConfig, TransactionSimulator

    start = date.today() - timedelta(days=days + 1)
    sim = TransactionSimulator(SimulationConfig(start=start, days=days, n_customers=customers, n_terminals=terminals))
    return pd.concat([sim.transactions_for_day(start + timedelta(days=d)) for d in range(days)], ignore_index=True)


def feature_input(pool: pd.DataFrame) -> pd.DataFrame:
    """Simulated raw events in the processed shape the features read (the catalogue's one derivation)."""
    from fraud_platform.domain.catalogue import derive_processed_rows

    return derive_processed_rows(pool)


def fill_online_store(pool: pd.DataFrame) -> dict:
    """The simulated history materialised into the online store the scorers read (non-empty state)."""
    from fraud_platform.domain.features import FeatureSnapshot
    from fraud_platform.infra.online_store import OnlineFeatureStore
    from fraud_platform.settings import OnlineStoreSettings

    store = OnlineFeatureStore.from_settings(OnlineStoreSettings.from_env())
    labels = pool.loc[pool["is_fraud"].astype(bool), ["transaction_id", "terminal_id", "event_time"]].assign(
        is_fraud=1, label_known_at=pool["event_time"].max())
    store.materialise(FeatureSnapshot.build(feature_input(pool), labels=labels))
    counts = store.entity_count()
    return {**counts, "used_memory_mib": store.used_memory() / 2**20}


def train_champion(pool: pd.DataFrame, artifact_root: str) -> None:
    """XGBoost on the shared features of the simulated pool, registered and aliased ``champion``."""
    from xgboost import XGBClassifier

    from fraud_platform.domain.features import FEATURE_COLUMNS, compute_batch_features

    X = compute_batch_features(feature_input(pool))[FEATURE_COLUMNS]
    model = XGBClassifier(n_estimators=100, max_depth=5, n_jobs=1).fit(X, pool["is_fraud"].astype(int))
    register_champion(model, FEATURE_COLUMNS, artifact_root)


class Producer:
    """Sends simulated transactions re-stamped with the send time, at a fixed rate or flat out."""

    def __init__(self, pool: pd.DataFrame, topic: str) -> None:
        from fraud_platform.infra.kafka import make_producer
        from fraud_platform.settings import KafkaSettings

        self.pool = pool.drop(columns=["is_fraud", "fraud_scenario"])
        self.topic = topic
        self.producer = make_producer(KafkaSettings.from_env(), **{"linger.ms": 5})

    def run(self, phase: str, rate: float | None, duration: float) -> int:
        from fraud_platform.domain.simulator import encode_transactions

        sent, start = 0, time.monotonic()
        chunk = int(rate * TICK) if rate else 5000
        while (now := time.monotonic()) - start < duration:
            if rate and sent >= rate * (now - start):
                time.sleep(TICK / 5)
                continue
            rows = self.pool.sample(chunk, replace=True, random_state=sent % 100000).reset_index(drop=True)
            rows["transaction_id"] = [f"{phase}-{sent + i:09d}" for i in range(chunk)]
            rows["event_time"] = pd.Timestamp(datetime.now(timezone.utc))
            for key, value in encode_transactions(rows):
                while True:
                    try:
                        self.producer.produce(self.topic, key=key, value=value)
                        break
                    except BufferError:
                        self.producer.poll(0.05)
            self.producer.poll(0)
            sent += chunk
        self.producer.flush(60)
        return sent

    def close(self) -> None:
        self.producer.close()  # before the broker stops, or the idle client keeps reconnecting


def collect(topic: str, phase: str, expected: int, positions: dict[int, int], timeout: float) -> list[tuple[float, float]]:
    """(event_time_ms, prediction_kafka_ts_ms) of the phase's predictions, waiting until all arrived."""
    from fraud_platform.infra.kafka import read_range
    from fraud_platform.settings import KafkaSettings

    settings = KafkaSettings.from_env()
    found: dict[str, tuple[float, float]] = {}
    deadline = time.monotonic() + timeout
    while len(found) < expected and time.monotonic() < deadline:
        for chunk, next_positions in read_range(settings, topic, positions, idle_timeout=1.0):
            for msg in chunk:
                p = json.loads(msg.value())
                if p["transaction_id"].startswith(phase + "-"):
                    event_ms = pd.Timestamp(p["event_time"]).value / 1e6
                    found[p["transaction_id"]] = (event_ms, float(msg.timestamp()[1]))
            positions.update(next_positions)
        time.sleep(0.5)
    return list(found.values())


def phase_stats(name: str, rate: str, sent: int, pairs: list[tuple[float, float]], produce_seconds: float) -> dict:
    if not pairs:
        return {"scorer": name, "rate": rate, "sent": sent, "scored": 0, "load1": load1()}
    events, predicted = np.array(pairs).T
    latency = (predicted - events) / 1000.0
    span = (predicted.max() - events.min()) / 1000.0
    return {
        "scorer": name, "rate": rate, "sent": sent, "scored": len(pairs), "offered/s": sent / produce_seconds,
        "throughput/s": len(pairs) / span, "p50_s": np.percentile(latency, 50), "p95_s": np.percentile(latency, 95),
        "p99_s": np.percentile(latency, 99), "load1": load1(),
    }


_BATCH_LINE = re.compile(r"^(\S+ \S+) INFO spark_streaming: batch (\d+): (\d+) in = .*; [\d.]+s \(\d+ tasks, "
                         r"slowest ([\d.]+)s; plan (\d+) ms, tasks (\d+) ms, complete (\d+) ms\)")
_DURATIONS_LINE = re.compile(r"^\S+ \S+ INFO spark_streaming: batch (\d+) durations ms: (\{.*\})")


def batch_anatomy(log: Path, since: datetime, until: datetime) -> dict:
    """Where a phase's micro-batches spent their time, from the scorer's own log (batches that
    ended in [since, until], local time like the log's): median and p90 of records per batch, the
    Spark job ("tasks"), the slowest task's own ``process_range``, the driver's sinks ("complete")
    and Spark's trigger durations (plain loop: no Spark durations). A record waits for the running
    batch and rides the next, so p99 latency is about two p90 batches."""
    batches, spark = {}, {}
    for line in log.read_text(errors="replace").splitlines():
        if m := _BATCH_LINE.match(line):
            ended = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
            if since <= ended <= until:
                records, slowest, _, tasks, complete = (float(x) for x in m.groups()[2:])
                batches[int(m.group(2))] = {"records": records, "job": tasks, "slowest task": slowest * 1000,
                                            "complete": complete}
        elif m := _DURATIONS_LINE.match(line):
            spark[int(m.group(1))] = json.loads(m.group(2))
    spark_names = {"triggerExecution": "trigger", "latestOffset": "latestOffset", "walCommit": "walCommit",
                   "commitOffsets": "commitOffsets"}
    rows = [{**row, **{short: spark[batch][name] for name, short in spark_names.items() if name in spark.get(batch, {})}}
            for batch, row in batches.items()]
    if not rows:
        return {}
    frame = pd.DataFrame(rows)
    return {"batches": len(frame), **{column: f"{frame[column].median():,.0f} ({frame[column].quantile(0.9):,.0f})"
                                      for column in frame.columns}}


def plain_worker() -> None:
    """The reference: confluent-kafka assign/consume -> the same BatchHandler -> same sinks, no Spark."""
    from confluent_kafka import KafkaError, TopicPartition

    from fraud_platform.infra.kafka import make_consumer, topic_partitions
    from spark_streaming import configure_logging
    from spark_streaming.config import StreamConfig
    from spark_streaming.job import BatchHandler, build_components, settle_heap
    from spark_streaming.source import messages_to_batch

    import pyarrow as pa

    configure_logging()  # the batch lines the phases' anatomy is read from
    config = StreamConfig.load()
    parts = build_components(config)
    handler = BatchHandler(parts)
    settle_heap()
    kafka = config.platform.kafka
    topic = kafka.topics.transactions
    consumer = make_consumer(kafka, "bench-plain", **{"fetch.wait.max.ms": 50})
    consumer.assign([TopicPartition(topic, p, 0) for p in topic_partitions(kafka, topic)])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    batch_id = 0
    while not stop.is_set():
        msgs = [m for m in consumer.consume(50000, timeout=0.2) if m.error() is None or m.error().code() != KafkaError._PARTITION_EOF]
        if msgs:
            handler.process(pa.Table.from_batches([messages_to_batch(msgs)]), batch_id)
            batch_id += 1
    consumer.close()
    parts.close()


class ProcessTree:
    """RSS of a scorer (driver process, and with its JVM and Python workers) and the driver's CPU."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.cpu_seconds = 0.0

    def sample(self) -> dict:
        import psutil

        try:
            children = self.process.children(recursive=True)
            times = self.process.cpu_times()
            self.cpu_seconds = times.user + times.system  # the driver's own Python: not the JVM, not the workers
            driver = self.process.memory_info().rss
            tree = driver + sum(c.memory_info().rss for c in children if c.is_running())
        except psutil.Error:
            return {}
        return {"driver_rss_mib": driver / 2**20, "tree_rss_mib": tree / 2**20}


class PhaseCpu:
    """CPU used during a phase, as % of one core: the scorer's process tree (driver, JVM, Python
    workers), the embedded broker, the online store, this process (the producer) and the machine.
    Shows where the cores go in every run (a broker whose cost grows with the topic, say)."""

    def __init__(self, scorer_pid: int) -> None:
        import psutil

        from fraud_platform.infra.broker import EmbeddedBroker
        from fraud_platform.infra.online_store_server import EmbeddedOnlineStore

        pids = {"broker": EmbeddedBroker.default().state().pid, "online store": EmbeddedOnlineStore.default().state().pid,
                "bench producer": os.getpid()}
        self.roots = {"scorer": psutil.Process(scorer_pid), **{name: psutil.Process(pid) for name, pid in pids.items()}}

    def _times(self) -> dict[str, dict[int, float]]:
        # The producer's children are the scorer's processes, counted apart; Redis has none.
        return {name: cpu_seconds_by_process(root, children=name in ("scorer", "broker")) for name, root in self.roots.items()}

    def start(self) -> None:
        import psutil

        self.begun, self.machine, self.first = time.monotonic(), psutil.cpu_times(), self._times()

    def shares(self) -> dict[str, float]:
        import psutil

        wall, machine, last = time.monotonic() - self.begun, psutil.cpu_times(), self._times()
        row = {f"{name} %": 100 * sum(cpu - self.first[name].get(pid, 0.0) for pid, cpu in pids.items()) / wall
               for name, pids in last.items()}
        idle = (machine.idle + machine.iowait) - (self.machine.idle + self.machine.iowait)
        row["machine %"] = 100 * (sum(machine) - sum(self.machine) - idle) / wall
        return row


def scorer_command(name: str, trigger: float, master: str = "local[2]", extra: tuple[str, ...] = ()) -> list[str]:
    if name == "plain":
        return [sys.executable, str(Path(__file__).resolve()), "--plain-worker"]
    return spark_scorer_command(trigger, master, extra)


def use_topics(home: Path, name: str, partitions: int) -> dict[str, str]:
    from fraud_platform.infra.kafka import ensure_topics
    from fraud_platform.settings import KafkaSettings

    env_topics = {
        "FRAUD_TOPIC_TRANSACTIONS": f"tx-{name}", "FRAUD_TOPIC_TRANSACTIONS_DLQ": f"tx-{name}.dlq",
        "FRAUD_TOPIC_PREDICTIONS": f"pred-{name}", "FRAUD_LAKE_ROOT": str(home / f"lake-{name}"),
        "FRAUD_STREAM_ALERTS_DUCKDB_PATH": str(home / f"alerts-{name}.duckdb"),
        "FRAUD_STREAM_CHECKPOINT": str(home / f"checkpoint-{name}"),
    }
    os.environ.update(env_topics)
    ensure_topics(KafkaSettings.from_env(), [env_topics["FRAUD_TOPIC_TRANSACTIONS"], env_topics["FRAUD_TOPIC_PREDICTIONS"]], partitions=partitions)
    return env_topics


def rate_phases(args, home: Path, pool: pd.DataFrame, rates: list[float | None], results: list, memory: list,
                anatomy: list, cpu_rows: list) -> None:
    for name in args.scorers.split(","):
        env_topics = use_topics(home, name, args.partitions)
        worker = spawn(scorer_command(name, args.trigger_seconds), home / f"{name}.log")
        tree, cpu = ProcessTree(worker.pid), PhaseCpu(worker.pid)
        producer = Producer(pool, env_topics["FRAUD_TOPIC_TRANSACTIONS"])
        positions = dict.fromkeys(range(args.partitions), 0)
        try:
            # Long enough for every executor Python worker to start and load the model: the first
            # batches after start-up take seconds each and would otherwise land in the 5k phase.
            warm = producer.run(f"warm{name}", 1000, args.warmup_seconds)
            if len(collect(env_topics["FRAUD_TOPIC_PREDICTIONS"], f"warm{name}", warm, positions, 300)) < warm:
                raise RuntimeError(f"{name} scorer did not warm up; see {home / (name + '.log')}")
            # Spark starts a second Python worker per core a batch or two later (the source's read
            # and the scoring task alternate between pooled workers): seconds of start-up that would
            # land in the first measured phase as a backlog it spends the phase draining. Short warm
            # rounds until one comes back with p99 < 1 s (at most 4) leave the scorer in steady state.
            for round_ in range(4):
                sent = producer.run(f"warm{name}r{round_}", 1000, 5)
                pairs = collect(env_topics["FRAUD_TOPIC_PREDICTIONS"], f"warm{name}r{round_}", sent, positions, 300)
                p99 = phase_stats(name, "warm", sent, pairs, 5).get("p99_s", float("inf"))
                print(f"{name} warm round {round_}: p99 {p99:.2f}s (load {load1():.1f})", flush=True)
                if p99 < 1.0:
                    break
            start_memory, started = tree.sample(), time.monotonic()
            for i, rate in enumerate(rates):
                phase = f"{name}{i}"
                begun, begun_at = time.monotonic(), datetime.now()
                cpu.start()
                sent = producer.run(phase, rate or args.max_offered, args.duration)
                produce_seconds = time.monotonic() - begun
                cpu_shares = cpu.shares()
                produced_at = datetime.now()
                pairs = collect(env_topics["FRAUD_TOPIC_PREDICTIONS"], phase, sent, positions, 600)
                rate_name = "max" if rate is None else f"{rate:.0f}"
                results.append(phase_stats(name, rate_name, sent, pairs, produce_seconds))
                anatomy.append({"scorer": name, "rate": rate_name, **batch_anatomy(home / f"{name}.log", begun_at, produced_at)})
                cpu_rows.append({"scorer": name, "rate": rate_name, **cpu_shares})
                print(results[-1], flush=True)
            memory.append({"scorer": name, "minutes": (time.monotonic() - started) / 60,
                           **{f"start_{k}": v for k, v in start_memory.items()}, **{f"end_{k}": v for k, v in tree.sample().items()}})
        finally:
            producer.close()
            stop_worker(worker)


def scale_out(args, home: Path, pool: pd.DataFrame) -> list[dict]:
    """A backlog already in the topic, producer idle: --available-now with 1 then 2 executor cores."""
    env_topics = use_topics(home, "backlog", args.partitions)
    producer = Producer(pool, env_topics["FRAUD_TOPIC_TRANSACTIONS"])
    rows = []
    try:
        sent = 0
        while sent < args.backlog:
            sent += producer.run(f"backlog{sent}", None, 5)
        print(f"backlog: {sent} records in {env_topics['FRAUD_TOPIC_TRANSACTIONS']}", flush=True)
        for cores in (1, 2):
            checkpoint = home / f"checkpoint-backlog-{cores}"
            os.environ["FRAUD_ONLINE_STORE_PREFIX"] = f"bench-claims-{cores}:"  # fresh claims: the same ids are scored again
            fill = fill_online_store(pool)
            command = scorer_command("spark", 0.0, f"local[{cores}]", ("--available-now", "--checkpoint", str(checkpoint),
                                                                       "--max-offsets-per-trigger", str(args.backlog_batch)))
            worker = spawn(command, home / f"backlog-{cores}.log")
            tree = ProcessTree(worker.pid)
            startup_cpu = None  # the driver's CPU before its first batch ended (imports, Spark, model): not per record
            while worker.poll() is None:
                tree.sample()
                if startup_cpu is None and "spark_streaming: batch 0:" in (home / f"backlog-{cores}.log").read_text(errors="replace"):
                    startup_cpu = tree.cpu_seconds
                time.sleep(0.5)
            if worker.returncode != 0:
                raise RuntimeError(f"backlog scorer failed; see {home / f'backlog-{cores}.log'}")
            text = (home / f"backlog-{cores}.log").read_text()
            batch_seconds = [float(x) for x in re.findall(r"dead-lettered; \d+ alerts; model \S+ v\S+; ([\d.]+)s", text)]
            per_batch = [int(x) for x in re.findall(r"= (\d+) scored \+", text)]
            scored = sum(per_batch)
            rows.append({"executor_cores": cores, "records": sent, "scored": scored, "batches": len(batch_seconds),
                         "busy_s": sum(batch_seconds), "throughput/s": scored / max(sum(batch_seconds), 1e-9),
                         "driver_cpu_s": tree.cpu_seconds, "driver_startup_cpu_s": startup_cpu or 0.0,
                         "driver_cpu_us_per_record": (tree.cpu_seconds - (startup_cpu or 0.0)) / max(scored - per_batch[0], 1) * 1e6,
                         "entities": fill.get("customers"), "load1": load1()})
            print(rows[-1], flush=True)
    finally:
        producer.close()
    return rows


def soak(args, home: Path, pool: pd.DataFrame) -> list[dict]:
    """The Spark scorer at a steady rate for ``--soak-minutes``: its RSS each minute (flat or not).

    Predictions are not collected (millions of them would cost the bench more memory than the
    scorer); the scorer's own log says what it scored.
    """
    env_topics = use_topics(home, "soak", args.partitions)
    worker = spawn(scorer_command("spark", args.trigger_seconds), home / "soak.log")
    tree = ProcessTree(worker.pid)
    producer = Producer(pool, env_topics["FRAUD_TOPIC_TRANSACTIONS"])
    rows, sent = [], 0
    try:
        warm = producer.run("soakwarm", 1000, args.warmup_seconds)
        collect(env_topics["FRAUD_TOPIC_PREDICTIONS"], "soakwarm", warm, dict.fromkeys(range(args.partitions), 0), 300)
        for minute in range(int(args.soak_minutes) + 1):
            scored = sum(int(x) for x in re.findall(r"= (\d+) scored \+", (home / "soak.log").read_text(errors="replace")))
            rows.append({"minute": minute, "sent": sent, "scored": scored, **tree.sample(), "load1": load1()})
            print(rows[-1], flush=True)
            if minute < args.soak_minutes:
                sent += producer.run(f"soak{minute}", args.soak_rate, 60)
    finally:
        producer.close()
        stop_worker(worker)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per rate (default 60)")
    parser.add_argument("--rates", default="5000,max")
    parser.add_argument("--scorers", default="spark,plain")
    parser.add_argument("--trigger-seconds", type=float, default=0.0, help="0: next micro-batch as soon as one ends")
    parser.add_argument("--max-offered", type=float, default=40000.0, help="send rate of the 'max' phase (above the scorer's capacity)")
    parser.add_argument("--warmup-seconds", type=float, default=15.0, help="1000 tx/s before the measured phases")
    parser.add_argument("--customers", type=int, default=60000, help="simulated customers (>= 50k distinct end up in the store)")
    parser.add_argument("--terminals", type=int, default=10000)
    parser.add_argument("--backlog", type=int, default=2_000_000, help="at least this many records for the scale-out phase (0 = skip)")
    parser.add_argument("--backlog-batch", type=int, default=100_000, help="maxOffsetsPerTrigger while draining the backlog")
    parser.add_argument("--partitions", type=int, default=2, help="partitions of each benchmark topic (= tasks per micro-batch)")
    parser.add_argument("--soak-minutes", type=float, default=0, help="then run the Spark scorer this long at --soak-rate, RSS each minute")
    parser.add_argument("--soak-rate", type=float, default=1000.0)
    parser.add_argument("--plain-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_worker:
        plain_worker()
        return

    home = bench_home("fraud-bench-", args.partitions)
    machine = machine_line()
    results, memory, anatomy, cpu_rows, scaling, soaked = [], [], [], [], [], []
    with embedded_services():
        pool = simulated_pool(customers=args.customers, terminals=args.terminals)
        state = fill_online_store(pool)
        print(f"online store: {state}", flush=True)
        train_champion(pool, (home / "artifacts").as_uri())
        rates = [None if r == "max" else float(r) for r in args.rates.split(",") if r]
        if rates:
            rate_phases(args, home, pool, rates, results, memory, anatomy, cpu_rows)
        if args.backlog:
            scaling = scale_out(args, home, pool)
        if args.soak_minutes:
            soaked = soak(args, home, pool)

    fmt = lambda v: f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}"  # noqa: E731
    print(f"\nStreaming scorer benchmark — {machine}; {args.duration:.0f}s per rate, trigger {args.trigger_seconds}s, {args.partitions} partitions")
    print(f"online store state: {state}")
    if results:
        table = pd.DataFrame(results)
        print(table.to_string(index=False, float_format=fmt))
        spark_max = table[(table.scorer == "spark") & (table.rate == "max")]
        plain_max = table[(table.scorer == "plain") & (table.rate == "max")]
        if len(spark_max) and len(plain_max):
            ratio = spark_max["throughput/s"].iloc[0] / plain_max["throughput/s"].iloc[0]
            print(f"spark / plain throughput at max rate: {ratio:.2f}x (target >= 1.0x)")
    if anatomy:
        print("\nmicro-batches of each phase, from the scorer's log: p50 (p90); records, else ms (p99 latency ~ two p90 batches)")
        print(pd.DataFrame(anatomy).to_string(index=False))
    if cpu_rows:
        print("\nCPU while each phase was produced, % of one core (the machine has "
              f"{os.cpu_count()} cores; bench producer = this process)")
        print(pd.DataFrame(cpu_rows).to_string(index=False, float_format=lambda v: f"{v:,.0f}"))
    if memory:
        print("\nscorer RSS (MiB) at the start and end of the rate phases (driver = the Python driver; tree = + JVM + workers)")
        print(pd.DataFrame(memory).to_string(index=False, float_format=fmt))
    if scaling:
        table = pd.DataFrame(scaling)
        print(f"\nscale-out on a {int(table['records'].iloc[0]):,}-record backlog (available-now, {args.backlog_batch:,} per micro-batch)")
        print(table.to_string(index=False, float_format=fmt))
        if len(table) == 2:
            print(f"2 cores / 1 core: {table['throughput/s'].iloc[1] / table['throughput/s'].iloc[0]:.2f}x (target >= 1.6x)")
    if soaked:
        print(f"\nsoak: Spark scorer at {args.soak_rate:.0f} tx/s for {args.soak_minutes:.0f} min, RSS (MiB) each minute")
        print(pd.DataFrame(soaked).to_string(index=False, float_format=fmt))


if __name__ == "__main__":
    main()
