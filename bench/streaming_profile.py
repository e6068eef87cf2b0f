"""Where a scoring task's time goes: CPU seconds per record of each phase of ``executor.process_range``
(the code every Spark task runs), plus the CPU the embedded broker and Redis spend per record.

    .venv/bin/python bench/streaming_profile.py [--records 40000] [--batch 1250] [--customers 60000]

Same real setup as ``bench/streaming.py`` (embedded broker, Redis materialised with >= 50k customers,
XGBoost champion, DuckDB alerts staged in the lake, SQLite decision log); the records are produced
first, then read and scored in this process range by range (``--batch`` records per range, the size
of one task of a micro-batch at 5k tx/s), each phase timed with ``time.process_time`` (this process,
all threads) and wall time. CPU per record does not depend on the load much; wall time does.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _machine import cpu_seconds_by_process, machine_line  # noqa: E402

TOTALS: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])


def timed(name: str, fn):
    """``fn`` accumulating its CPU and wall seconds under ``name`` (only the outermost timed call counts)."""
    active = []

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if active:
            return fn(*args, **kwargs)
        active.append(1)
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            total = TOTALS[name]
            total[0] += time.process_time() - cpu
            total[1] += time.perf_counter() - wall
            total[2] += 1
            active.pop()

    return wrapper


def instrument() -> None:
    """Wrap each phase of the task where the task looks it up (module globals and methods)."""
    import fraud_platform.infra.online_store as online_store
    import spark_streaming.decisions as decisions
    import spark_streaming.executor as executor
    import spark_streaming.scoring as scoring
    import spark_streaming.sinks as sinks

    scoring.validate_transactions = timed("validate", scoring.validate_transactions)
    scoring.processed_frame = timed("processed_frame", scoring.processed_frame)
    scoring.reasons_of = timed("reasons", scoring.reasons_of)
    online_store.OnlineFeatureStore.claim_ids = timed("redis claim_ids", online_store.OnlineFeatureStore.claim_ids)
    online_store.OnlineFeatureStore._read = timed("redis read entities", online_store.OnlineFeatureStore._read)
    online_store.features_on_history = timed("features (pandas)", online_store.features_on_history)
    online_store.OnlineFeatureStore.state_version = timed("redis state_version", online_store.OnlineFeatureStore.state_version)
    executor.record_decisions = timed("decision log", executor.record_decisions)
    decisions.decision_columns = timed("decision log: build rows", decisions.decision_columns)
    sinks.StagedAlerts.stage = timed("alerts staged (parquet)", sinks.StagedAlerts.stage)
    sinks.ScoredLake.write = timed("lake scored/ (parquet)", sinks.ScoredLake.write)
    sinks.KafkaOutputs.send_predictions = timed("predictions produce", sinks.KafkaOutputs.send_predictions)
    sinks.KafkaOutputs.flush = timed("predictions flush", sinks.KafkaOutputs.flush)
    executor.process_range = timed("process_range (all)", executor.process_range)
    original = executor.worker_model

    def model_predict_timed(plan):
        model = original(plan)
        if not getattr(model.predict, "_timed", False):
            model.predict = timed("model predict", model.predict)
            model.predict._timed = True
        return model

    executor.worker_model = model_predict_timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=40000)
    parser.add_argument("--batch", type=int, default=1250, help="records per range (one task's share of a micro-batch)")
    parser.add_argument("--customers", type=int, default=60000)
    parser.add_argument("--terminals", type=int, default=10000)
    parser.add_argument("--warm-ranges", type=int, default=3, help="ranges scored before measuring (model load, connections)")
    parser.add_argument("--cprofile", type=int, default=0, help="also print the top N functions (cProfile, by own time)")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="fraud-profile-"))
    os.environ.update({
        "FRAUD_PLATFORM_HOME": str(home), "FRAUD_STREAM_METRICS_PORT": "0", "FRAUD_MODEL_NAME": "fraud_detector_bench",
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}", "MLFLOW_REGISTRY_URI": f"sqlite:///{home / 'mlflow.db'}",
        "FRAUD_TOPIC_PARTITIONS": "1", "FRAUD_ONLINE_STORE_PREFIX": "bench:",
    })
    import psutil
    import pyarrow as pa

    from streaming import Producer, fill_online_store, simulated_pool, train_champion, use_topics

    from fraud_platform.infra.broker import EmbeddedBroker
    from fraud_platform.infra.online_store_server import EmbeddedOnlineStore

    machine = machine_line()
    broker = EmbeddedBroker.default()
    broker_state = broker.start()
    online = EmbeddedOnlineStore.default()
    online_state = online.start()
    os.environ["FRAUD_ONLINE_STORE_URL"] = online_state.url
    try:
        pool = simulated_pool(customers=args.customers, terminals=args.terminals)
        state = fill_online_store(pool)
        train_champion(pool, (home / "artifacts").as_uri())
        topics = use_topics(home, "profile", 1)
        producer = Producer(pool, topics["FRAUD_TOPIC_TRANSACTIONS"])
        own = psutil.Process()
        cpu0 = own.cpu_times()
        t0 = time.perf_counter()
        sent = 0
        while sent < args.records:
            sent += producer.run(f"prof{sent}", None, 1)
        producer.close()
        cpu1 = own.cpu_times()
        produce_cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
        print(f"produced {sent} records: {produce_cpu / sent * 1e6:.1f} us CPU/record in the producer "
              f"({time.perf_counter() - t0:.1f}s wall)", flush=True)

        from spark_streaming.config import StreamConfig
        from spark_streaming.job import BatchHandler, build_components, settle_heap
        from spark_streaming.source import kafka_options, read_ranges
        import spark_streaming.executor as executor

        instrument()
        parts = build_components(StreamConfig.load())
        handler = BatchHandler(parts)
        settle_heap()
        options = kafka_options(parts.kafka.client_config())
        servers = {"broker": psutil.Process(broker_state.pid), "redis": psutil.Process(online_state.pid)}

        def server_cpu() -> dict[str, float]:
            return {name: sum(cpu_seconds_by_process(proc).values()) for name, proc in servers.items()}

        topic = topics["FRAUD_TOPIC_TRANSACTIONS"]
        import cProfile

        profiler = cProfile.Profile() if args.cprofile else None
        measured = 0
        start_cpu = start_wall = start_servers = None
        for i, offset in enumerate(range(0, sent - args.batch + 1, args.batch)):
            if i == args.warm_ranges:
                TOTALS.clear()
                start_cpu, start_wall, start_servers = time.process_time(), time.perf_counter(), server_cpu()
            plan = handler.plan(i)
            ranges = pa.table({"topic": [topic], "partition": pa.array([0], pa.int32()),
                               "start_offset": [offset], "end_offset": [offset + args.batch]})
            started = time.monotonic()
            rows = []
            if profiler is not None and i >= args.warm_ranges:
                profiler.enable()
            cpu, wall = time.process_time(), time.perf_counter()
            ranges_read = list(read_ranges(options, ranges, 10.0))
            total = TOTALS["kafka read range"]
            total[0] += time.process_time() - cpu
            total[1] += time.perf_counter() - wall
            total[2] += 1
            for records in ranges_read:
                rows.append(executor.process_range(plan, records).row())
            if profiler is not None:
                profiler.disable()
            handler.complete(plan, rows, started)
            if i >= args.warm_ranges:
                measured += args.batch
        cpu = time.process_time() - start_cpu
        wall = time.perf_counter() - start_wall
        servers_used = {k: v - start_servers[k] for k, v in server_cpu().items()}
        parts.close()
    finally:
        from spark_streaming import close_cached_clients

        close_cached_clients()
        online.stop()
        broker.stop()

    print(f"\nScoring task profile - {machine}; load average {os.getloadavg()}")
    print(f"online store state: {state}; {measured} records in ranges of {args.batch}")
    print(f"{'phase':32s} {'CPU us/rec':>10s} {'wall us/rec':>11s} {'CPU ms/range':>12s} {'calls':>6s}")
    ranges_n = max(measured // args.batch, 1)
    for name, (c, w, n) in sorted(TOTALS.items(), key=lambda kv: -kv[1][0]):
        print(f"{name:32s} {c / measured * 1e6:10.1f} {w / measured * 1e6:11.1f} {c / ranges_n * 1e3:12.2f} {n:6d}")
    print(f"{'whole loop (this process)':32s} {cpu / measured * 1e6:10.1f} {wall / measured * 1e6:11.1f}")
    for name, used in servers_used.items():
        print(f"{name + ' server CPU':32s} {used / measured * 1e6:10.1f}")
    print(f"{'producer (bench) CPU':32s} {produce_cpu / sent * 1e6:10.1f}")
    if profiler is not None:
        import pstats

        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.cprofile)


if __name__ == "__main__":
    main()
