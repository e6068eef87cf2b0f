"""Stream decisions into the decision log, and the challenger's shadow scores beside them.

Runs in the executor tasks (``executor.process_range``) right after scoring, before the other sinks:

* Every scored transaction is upserted into the decision log (``fraud_platform.infra.decision_log``,
  the table the decision API writes, ``source`` = "stream") by transaction id, so a micro-batch
  replayed after a crash rewrites its rows instead of adding to them. A row the log refuses is
  dead-lettered (rule ``sink_failed``, field ``decision_log``) and leaves the batch, so no other sink
  sees it; a lost connection fails the task and the batch replays.
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
from fraud_platform.infra.decision_log import as_row
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


def decision_rows(batch: ScoredBatch) -> list[dict]:
    """The batch's decisions as decision-log rows (the API's columns), ``features`` = what the model saw."""
    scored = batch.scored
    if scored.empty:
        return []
    used = list(batch.model.info.features)
    features = scored[used].to_numpy(dtype="float64").tolist()
    processed = pd.Timestamp(scored["processing_time"].iloc[0])
    latency_ms = (processed.value / 1e6 - batch.kafka_timestamps_ms).tolist()  # Kafka append -> decided
    event_times = iso_utc(scored["event_time"])
    decided_at = processed.isoformat()
    details = batch.reason_details
    columns = ("transaction_id", "customer_key", "terminal_id", "amount_eur", "score", "decision", "threshold",
               "block_threshold", "model_name", "model_version", "feature_snapshot_version", "channel", "country")
    rows = []
    for i, (tx, customer, terminal, amount, score, decision, review, block, name, version, state, channel, country) in enumerate(
            zip(*(scored[c].tolist() for c in columns))):
        rows.append({
            "transaction_id": tx, "decided_at": decided_at, "source": "stream", "event_time": event_times[i][:-1] + "+00:00",
            "customer_key": customer, "terminal_id": terminal, "amount_eur": amount, "score": score, "decision": decision,
            "threshold": review, "block_threshold": block, "model_name": name, "model_version": str(version),
            "feature_state_version": state, "reasons": details.get(tx, []), "latency_ms": latency_ms[i], "api_key": None,
            "channel": channel, "country": country, "features": dict(zip(used, features[i])),
        })
    return rows


def record_decisions(batch: ScoredBatch, records: pa.Table, decision_log, shadow: ShadowPlan | None = None,
                     challenger: ActiveModel | None = None, shadow_log=None) -> int:
    """Write the batch's decisions (refused rows dead-lettered) and, with a challenger, its shadow
    scores; returns the number of shadow rows written."""
    from spark_streaming.sinks import write_isolating

    decisions = decision_rows(batch)
    rows = [as_row(d) for d in decisions]
    refused = write_isolating(lambda part: decision_log.write_rows(rows[part]), [d["transaction_id"] for d in decisions],
                              decision_log.connection_errors)
    batch.dead_letter_failed(refused, "decision_log", records)
    if shadow is None or challenger is None or not decisions:
        return 0
    try:
        from fraud_platform.ml.shadow import shadow_rows

        features = list(challenger.info.features)
        model = SimpleNamespace(predict=lambda X: np.asarray(challenger.predict(pd.DataFrame(X, columns=features)), dtype="float64"))
        kept = [d for d in decisions if d["transaction_id"] not in refused]
        scores = shadow_rows(kept, model, challenger.version, features, shadow.review, shadow.block)
        shadow_log.write(scores)
        return len(scores)
    except Exception as error:  # shadow work never costs a live decision
        log.warning("shadow scoring of %d decisions with challenger v%s failed: %s", len(decisions), challenger.version, one_line(error))
        return 0
