"""Pure domain code (no Dagster, no Spark, no Kafka client): the event schema, validation rules,
the transaction simulator, feature definitions and model metrics. Both the Dagster assets and the
``spark_streaming`` scorer import from here, so there is exactly one definition of each."""
