"""Stream decisions into the decision log, and the challenger's shadow scores beside them.

Runs in the executor tasks (``executor.process_range``) right after scoring, before the other sinks:

* Every scored transaction is upserted into the decision log (``fraud_platform.infra.decision_log``,
  the table the decision API writes, ``source`` = "stream") by transaction id, so a micro-batch
  replayed after a crash rewrites its rows instead of adding to them. A row the log refuses is
  dead-lettered (rule ``sink_failed``, field ``decision_log``) and leaves the batch, so no other sink
  sees it; a row a later sink refuses (the alert store) is taken out of the log again
  (:func:`forget_decisions`): a dead-lettered record has no decision. A lost connection fails the
  task and the batch replays.
* When the plan names a challenger, it scores the same rows from the feature values the champion
  saw (``fraud_platform.ml.shadow.shadow_rows``, the API's code) into the same ``<table>_shadow``, so
  ``challenger_shadow_report`` sees stream and API traffic alike. Never acted on; a shadow failure is
  logged and never fails the batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa

from fraud_platform.domain.json_lines import iso_utc
from fraud_platform.infra.decision_log import COLUMNS, JSON_COLUMNS, to_json
from fraud_platform.ml.registry import ChampionInfo

from spark_streaming.champion import ActiveModel, one_line
from spark_streaming.scoring import ScoredBatch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShadowPlan:
    """The challenger a micro-batch is shadow-scored with, and its thresholds (the champion's rule)."""

    challenger: ChampionInfo
    review: float
    block: float


def decision_columns(batch: ScoredBatch) -> dict[str, list]:
    """The batch's decisions as the decision log's columns (``COLUMNS``; ``reasons`` lists of dicts,
    ``features`` rows of the model's feature values). Built column-wise: one dict per row costs more
    than scoring it."""
    scored = batch.scored
    n = len(scored)
    used = list(batch.model.info.features) if n else []
    processed = pd.Timestamp(scored["processing_time"].iloc[0]) if n else pd.Timestamp.now(tz="UTC")
    details = batch.reason_details
    ids = scored["transaction_id"].tolist()
    return {
        "transaction_id": ids, "decided_at": [processed.isoformat()] * n, "source": ["stream"] * n,
        "event_time": [t[:-1] + "+00:00" for t in iso_utc(scored["event_time"])] if n else [],
        "customer_key": scored["customer_key"].tolist(), "terminal_id": scored["terminal_id"].tolist(),
        "amount_eur": scored["amount_eur"].tolist(), "score": scored["score"].tolist(), "decision": scored["decision"].tolist(),
        "threshold": scored["threshold"].tolist(), "block_threshold": scored["block_threshold"].tolist(),
        "model_name": scored["model_name"].tolist(), "model_version": scored["model_version"].astype(str).tolist(),
        "feature_state_version": scored["feature_snapshot_version"].tolist(),
        "reasons": [details.get(tx, []) for tx in ids],
        "latency_ms": (processed.value / 1e6 - batch.kafka_timestamps_ms).tolist(),  # Kafka append -> decided
        "api_key": [None] * n, "channel": scored["channel"].tolist(), "country": scored["country"].tolist(),
        "features": [dict(zip(used, row)) for row in scored[used].to_numpy(dtype="float64").tolist()] if n else [],
    }


def log_rows(columns: dict[str, list]) -> list[tuple]:
    """Decision-log rows (``COLUMNS`` order, JSON columns encoded) from :func:`decision_columns`."""
    return list(zip(*([to_json(v) for v in columns[c]] if c in JSON_COLUMNS else columns[c] for c in COLUMNS)))


def decisions_of(columns: dict[str, list], keep) -> list[dict]:
    """One dict per decision (what ``shadow_rows`` takes) for the rows where ``keep(transaction_id)``."""
    names = list(columns)
    return [dict(zip(names, values)) for values in zip(*columns.values()) if keep(values[0])]


def forget_decisions(decision_log, transaction_ids, shadow_log=None) -> None:
    """Delete decisions (and shadow scores) of records a later sink refused: they are dead-lettered, not decided."""
    from fraud_platform.infra.decision_tables import execute

    for table in (decision_log.table, *([shadow_log.table] if shadow_log is not None else [])):
        execute(decision_log, f"DELETE FROM {table} WHERE transaction_id = ?", many=[(t,) for t in transaction_ids])


def record_decisions(batch: ScoredBatch, records: pa.Table, decision_log, shadow: ShadowPlan | None = None,
                     challenger: ActiveModel | None = None, shadow_log=None) -> int:
    """Write the batch's decisions (refused rows dead-lettered) and, with a challenger, its shadow
    scores; returns the number of shadow rows written."""
    from spark_streaming.sinks import write_isolating

    columns = decision_columns(batch)
    rows = log_rows(columns)
    ids = columns["transaction_id"]
    refused = write_isolating(lambda part: decision_log.write_rows(rows[part]), ids, decision_log.connection_errors)
    batch.dead_letter_failed(refused, "decision_log", records)
    if shadow is None or challenger is None or not ids:
        return 0
    try:
        from fraud_platform.ml.shadow import shadow_rows

        features = list(challenger.info.features)
        model = SimpleNamespace(predict=lambda X: np.asarray(challenger.predict(pd.DataFrame(X, columns=features)), dtype="float64"))
        scores = shadow_rows(decisions_of(columns, lambda tx: tx not in refused), model, challenger.version, features,
                             shadow.review, shadow.block)
        shadow_log.write(scores)
        return len(scores)
    except Exception as error:  # shadow work never costs a live decision
        log.warning("shadow scoring of %d decisions with challenger v%s failed: %s", len(ids), challenger.version, one_line(error))
        return 0
