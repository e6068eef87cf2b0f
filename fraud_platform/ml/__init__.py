"""Model training, evaluation and registry logic, free of Dagster so the benchmark and the
streaming scorer can use it directly; ``fraud_platform.defs.ml`` wraps it in assets."""
