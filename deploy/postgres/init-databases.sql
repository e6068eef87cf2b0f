-- Run once by the postgres image on an empty data volume (/docker-entrypoint-initdb.d/).
-- One PostgreSQL instance, one database per concern; the owner is the POSTGRES_USER superuser
-- created by the image from .env. docker-compose.yml points each service at its database:
--   dagster       Dagster run / event-log / schedule storage (deploy/dagster.yaml)
--   mlflow        MLflow tracking + model registry backend store
--   fraud_alerts  alerts written by the streaming scorer (table fraud_alerts)
--   fraud_warehouse  dbt models when FRAUD_DBT_TARGET=postgres
CREATE DATABASE dagster;
CREATE DATABASE mlflow;
CREATE DATABASE fraud_alerts;
-- dbt warehouse when FRAUD_DBT_TARGET=postgres (the default target is the DuckDB file).
CREATE DATABASE fraud_warehouse;
