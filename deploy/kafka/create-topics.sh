#!/usr/bin/env bash
# One-shot topic creation for the compose Kafka cluster (service kafka-init).
# Topic names, partition count, replication factor and min.insync.replicas come from the same
# FRAUD_TOPIC_* env vars the platform reads (fraud_platform/settings.py: TopicNames), with the
# same defaults (compose sets 3 replicas / min.insync.replicas 2). Idempotent.
set -euo pipefail

BOOTSTRAP="${KAFKA_BOOTSTRAP:-kafka:9092}"
KAFKA_BIN="${KAFKA_BIN:-/opt/kafka/bin}"
PARTITIONS="${FRAUD_TOPIC_PARTITIONS:-3}"
REPLICATION="${FRAUD_TOPIC_REPLICATION_FACTOR:-1}"
MIN_INSYNC="${FRAUD_TOPIC_MIN_INSYNC_REPLICAS:-1}"

topics=(
  "${FRAUD_TOPIC_TRANSACTIONS:-transactions}"
  "${FRAUD_TOPIC_TRANSACTIONS_DLQ:-transactions.dlq}"
  "${FRAUD_TOPIC_LABELS:-labels}"
  "${FRAUD_TOPIC_LABELS_DLQ:-labels.dlq}"
  "${FRAUD_TOPIC_PREDICTIONS:-fraud_predictions}"
)

for topic in "${topics[@]}"; do
  "${KAFKA_BIN}/kafka-topics.sh" --bootstrap-server "${BOOTSTRAP}" --create --if-not-exists \
    --topic "${topic}" --partitions "${PARTITIONS}" --replication-factor "${REPLICATION}" \
    --config "min.insync.replicas=${MIN_INSYNC}"
done

"${KAFKA_BIN}/kafka-topics.sh" --bootstrap-server "${BOOTSTRAP}" --list
