"""The embedded broker's CPU per message as a topic's history grows, by how its readers fetch.

    .venv/bin/python bench/broker.py [--rate 5000] [--seconds 120]

tansu's object-store engine (the embedded default, ``memory://``) keeps every produced batch as an
object; a Fetch that returns data lists all of the partition's batch objects to find the offset, so
its cost grows with the partition's history (produce does not list). Each mode produces ``--rate``
messages/s of 600 B (idempotent, acks=all, linger 5 ms - the platform's producers) to a fresh
2-partition broker for ``--seconds`` and prints tansu's CPU per produced message in the first and
last 15 s:

* ``produce only``: no reader;
* ``tailing consumer``: one consumer assigned at the end, fetching as data arrives (what a cached
  range consumer did between micro-batches while it stayed assigned);
* ``range reads``: every 0.5 s read the new records of each partition, then unassign - the
  streaming source's executors since they unassign their cached consumers between ranges.

A Kafka cluster (docker-compose) indexes its segments and has no such growth; this is the embedded
broker's cost, and why no platform reader tails a topic it does not need to.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _machine import cpu_seconds_by_process, machine_line, print_table  # noqa: E402

MODES = ("produce only", "tailing consumer", "range reads")
WINDOW = 15.0
PARTITIONS = 2


def read_loop(address: str, mode: str, stop: threading.Event, counts: list[int]) -> None:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": address, "group.id": "bench-broker", "enable.auto.commit": False,
                         "enable.partition.eof": True, "auto.offset.reset": "earliest", "fetch.wait.max.ms": 50})
    positions = [0] * PARTITIONS
    if mode == "tailing consumer":
        consumer.assign([TopicPartition("t", p, 0) for p in range(PARTITIONS)])
    while not stop.is_set():
        if mode == "range reads":
            time.sleep(0.5)
            consumer.assign([TopicPartition("t", p, positions[p]) for p in range(PARTITIONS)])
            ends = {p: consumer.get_watermark_offsets(TopicPartition("t", p), timeout=5)[1] for p in range(PARTITIONS)}
            while any(positions[p] < ends[p] for p in ends) and not stop.is_set():
                for msg in consumer.consume(1000, 0.2):
                    if msg.error() is None:
                        positions[msg.partition()] = msg.offset() + 1
                        counts[0] += 1
            consumer.unassign()
        else:
            for msg in consumer.consume(1000, 0.2):
                if msg.error() is None:
                    counts[0] += 1
    consumer.close()


def run_mode(mode: str, rate: float, seconds: float) -> list[object]:
    import psutil
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from fraud_platform.infra.broker import EmbeddedBroker

    broker = EmbeddedBroker(Path(tempfile.mkdtemp(prefix="fraud-bench-broker-")))
    state = broker.start()
    stop, counts, reader = threading.Event(), [0], None
    producer = None
    try:
        admin = AdminClient({"bootstrap.servers": state.address})
        admin.create_topics([NewTopic("t", PARTITIONS, 1)])["t"].result()
        del admin  # its handle would keep reconnecting after the broker stops
        producer = Producer({"bootstrap.servers": state.address, "linger.ms": 5, "acks": "all", "enable.idempotence": True})
        if mode != "produce only":
            reader = threading.Thread(target=read_loop, args=(state.address, mode, stop, counts), daemon=True)
            reader.start()
        payload, sent, windows = b"x" * 600, 0, []
        started = time.monotonic()
        broker_process = psutil.Process(state.pid)

        def cpu_seconds() -> float:
            return sum(cpu_seconds_by_process(broker_process).values())

        mark = (started, cpu_seconds(), 0)
        while (now := time.monotonic()) - started < seconds:
            while sent < int((now - started) * rate):
                producer.produce("t", payload, key=str(sent).encode())
                sent += 1
            producer.poll(0)
            time.sleep(0.01)
            if now - mark[0] >= WINDOW:
                cpu = cpu_seconds()
                windows.append((1e6 * (cpu - mark[1]) / max(sent - mark[2], 1), 100 * (cpu - mark[1]) / (now - mark[0])))
                mark = (now, cpu, sent)
                print(f"  {mode}: {now - started:4.0f} s, {sent:,} messages, tansu {windows[-1][1]:.0f} % of a core", flush=True)
        producer.flush(30)
        return [mode, sent, counts[0], windows[0][0], windows[-1][0], windows[-1][1]]
    finally:
        stop.set()
        if reader is not None:
            reader.join(10)
        if producer is not None:
            producer.flush(5)
            producer.close()  # before the broker stops, or the idle client keeps reconnecting
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=5000.0, help="messages per second (default 5000)")
    parser.add_argument("--seconds", type=float, default=120.0, help="per mode (default 120)")
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args()
    header = machine_line()
    rows = [run_mode(mode, args.rate, args.seconds) for mode in args.modes.split(",")]
    print(f"\nEmbedded broker (tansu, memory engine) - {header}; {args.rate:,.0f} msg/s of 600 B, {PARTITIONS} partitions, {args.seconds:.0f} s a mode")
    print_table("tansu CPU per produced message, first and last 15 s", ["reader", "produced", "read", "us/msg first", "us/msg last",
                                                                         "tansu % of a core, last"], rows)


if __name__ == "__main__":
    main()
