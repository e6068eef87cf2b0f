"""Spark's own share of a micro-batch: what the scorer's query shape costs with no scoring work.

    .venv/bin/python bench/spark_floor.py [--seconds 40]

The streaming scorer's latency is roughly two micro-batch cycles (a record waits for the running
batch, then rides the next), so its p99 can never be below twice Spark's per-batch floor. This
measures that floor on this machine with the scorer's own Spark settings (``scorer_spark_conf``,
``local[2]``) and a Python streaming source that plans one range per partition, as the Kafka
source does, but reads nothing (no broker, no store, no model):

* ``noop``: ``foreachBatch`` returns at once - the streaming machinery alone (offset and commit
  logs, trigger, planning);
* ``rdd``: one trivial Python task per partition through an RDD - the cheapest Spark job that runs
  Python on the executors;
* ``scorer shape``: the scorer's shape - the source's ranges evaluated by its Python reader, handed
  to ``mapInArrow`` and the per-task count row collected (the scorer runs exactly this with the
  scoring work inside the task).

Printed: median and p90 of the whole cycle (``triggerExecution``), of ``addBatch`` (the
``foreachBatch`` call) and of the offset/commit log writes, per shape, with the machine and load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _machine import machine_line, print_table  # noqa: E402

SHAPES = ("noop", "rdd", "scorer shape")
WARM_BATCHES = 10


def floor_source():
    """A streaming Python data source planning one (partition, start, end) range per partition."""
    from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition

    class Range(InputPartition):
        def __init__(self, partition: int, start: int, end: int) -> None:
            self.partition, self.start, self.end = partition, start, end

    class Reader(DataSourceStreamReader):
        def initialOffset(self) -> dict:
            return {"t": 0}

        def latestOffset(self) -> dict:
            return {"t": time.time_ns() // 1_000_000}  # always new data: a batch right after the last

        def partitions(self, start: dict, end: dict) -> list:
            return [Range(p, start["t"], end["t"]) for p in range(2)]

        def read(self, partition):
            yield partition.partition, partition.start, partition.end

    class FloorSource(DataSource):
        @classmethod
        def name(cls) -> str:
            return "spark_floor"

        def schema(self) -> str:
            return "partition int, start long, end long"

        def streamReader(self, schema):
            return Reader()

    return FloorSource


def count_rows(batches):
    import pyarrow as pa

    yield pa.RecordBatch.from_pylist([{"rows": sum(b.num_rows for b in batches)}])


def run_shape(spark, shape: str, seconds: float) -> list[dict]:
    from spark_streaming.job import add_progress_listener

    durations: list[dict] = []

    def handler(frame, batch_id: int) -> None:
        if shape == "rdd":
            spark.sparkContext.parallelize(range(2), 2).mapPartitions(lambda rows: [sum(1 for _ in rows)]).collect()
        elif shape == "scorer shape":
            frame.mapInArrow(count_rows, "rows long").collect()

    remove_listener = add_progress_listener(spark, lambda progress: durations.append(progress["durationMs"]))  # the scorer's own
    query = (spark.readStream.format("spark_floor").load().writeStream.foreachBatch(handler)
             .option("checkpointLocation", tempfile.mkdtemp(prefix="spark-floor-")).trigger(processingTime="0 seconds").start())
    time.sleep(seconds)
    query.stop()
    remove_listener()
    return durations[WARM_BATCHES:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40.0, help="per shape")
    args = parser.parse_args()

    from fraud_platform.infra.spark import build_spark_session
    from spark_streaming.job import scorer_spark_conf

    machine = machine_line()
    spark = build_spark_session("spark-floor", master="local[2]", conf=scorer_spark_conf())
    spark.sparkContext.setLogLevel("ERROR")
    spark.dataSource.register(floor_source())
    rows = []
    for shape in SHAPES:
        batches = run_shape(spark, shape, args.seconds)
        row = {"shape": shape, "batches": len(batches)}
        for key in ("triggerExecution", "addBatch", "walCommit", "commitOffsets"):
            values = sorted(d.get(key, 0) for d in batches)
            row[f"{key} p50 ms"] = statistics.median(values) if values else float("nan")
            row[f"{key} p90 ms"] = values[int(len(values) * 0.9)] if values else float("nan")
        row["load avg (1 min)"] = f"{os.getloadavg()[0]:.1f}"
        rows.append(row)
        print(row, flush=True)
    spark.stop()
    header = list(rows[0])
    print_table(f"Spark's per-micro-batch floor, scorer settings, local[2] - {machine}", header,
                [[row[h] for h in header] for row in rows])


if __name__ == "__main__":
    main()
