"""Infrastructure adapters without Dagster: lake storage, Kafka clients, the embedded broker and the
exactly-once landing engine. Shared by Dagster assets, the CLI, benchmarks and the streaming job."""
