"""PySpark's worker daemon with the scoring stack imported once, before it forks any worker.

Spark starts ``python -m <spark.python.daemon.module>`` once per executor and forks every Python
worker from it. The stock daemon imports only pyspark, so each new worker (a scoring task's, a
source read's) imported pandas, pyarrow, MLflow, xgboost with scikit-learn and this project: ~3 s
idle and 5-10 s on a loaded 2-core machine, paid again by every worker the pool adds and felt as batches of
a few hundred records taking seconds. Forked after these imports, a worker starts with them
already in (copy-on-write) memory and only loads the model (once, ``executor.worker_model``).

No threads of Python's own exist at fork time (these imports start none); the native pools that
numpy/pyarrow/xgboost create at import (OpenBLAS, jemalloc) have fork handlers.
"""

from __future__ import annotations

import gc


def preload() -> None:
    """Import what a scoring task imports (module level and lazily), then freeze it out of the GC."""
    import mlflow.models  # noqa: F401  (load_predictor: Model.load)
    import mlflow.xgboost  # noqa: F401
    import pyarrow.compute  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import pyspark.worker  # noqa: F401
    import redis  # noqa: F401
    import xgboost  # noqa: F401  (mlflow.xgboost imports it, and through it sklearn, only when loading)

    import fraud_platform.infra.kafka  # noqa: F401
    import fraud_platform.infra.online_store  # noqa: F401
    import fraud_platform.ml.explain  # noqa: F401
    import fraud_platform.ml.shadow  # noqa: F401  (worker_shadow_log, when a challenger is aliased)
    import spark_streaming.executor  # noqa: F401
    import spark_streaming.sinks  # noqa: F401
    import spark_streaming.source  # noqa: F401

    gc.collect()
    gc.freeze()  # forked workers never re-scan (nor copy) these objects' pages in a collection


if __name__ == "__main__":
    preload()
    from pyspark.daemon import manager

    manager()
