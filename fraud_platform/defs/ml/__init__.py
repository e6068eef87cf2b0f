"""Dagster definitions for the ml domain: training, evaluation and champion promotion."""

import dagster as dg

from fraud_platform.defs.ml.assets import (
    ModelTrainingResource,
    champion_model,
    fraud_model,
    model_backtest,
    model_evaluation,
)

defs = dg.Definitions(
    assets=[fraud_model, model_evaluation, champion_model, model_backtest],
    resources={"ml_training": ModelTrainingResource()},
)
