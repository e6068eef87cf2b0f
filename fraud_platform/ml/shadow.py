"""The challenger in shadow: scored on live traffic beside the champion, never acted on.

- :func:`shadow_rows` scores decided transactions with the challenger from the feature values the
  champion saw (recorded with every decision), so both models judge exactly the same inputs.
  Callers: the decision API (:class:`ShadowScorer`, off the request path) and, for the streaming
  scorer, anything holding champion decisions and a loaded challenger.
- :class:`ShadowLog` keeps the rows in ``<decisions table>_shadow`` beside the decision log.
- :func:`shadow_report` compares both on the rows whose labels are known: average precision,
  card precision@k at the daily alert budget, alert volume and decision agreement.
- :func:`live_promotion` turns a report into a promotion decision (the live-evidence gate).

No Dagster here; ``fraud_platform.defs.ml.shadow`` wires the report as an asset.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fraud_platform.domain.metrics import average_precision, card_precision_top_k
from fraud_platform.infra.decision_tables import create_table, execute
from fraud_platform.ml.registry import Decision

log = logging.getLogger(__name__)

SHADOW_COLUMNS = ("transaction_id", "decided_at", "source", "customer_key", "champion_version", "champion_score",
                  "champion_decision", "challenger_version", "challenger_score", "challenger_decision")


def shadow_rows(decisions: list[dict], model, version: str, features: list[str], review: float, block: float) -> list[dict]:
    """Challenger scores for champion decisions that carry their ``features`` (missing -> skipped)."""
    from spark_streaming.scoring import decide as decide_scores

    usable = [d for d in decisions if d.get("features") and all(f in d["features"] for f in features)
              and str(d.get("model_version")) != str(version)]  # a promoted challenger is the champion now
    if not usable:
        return []
    X = np.array([[d["features"][f] for f in features] for d in usable], dtype="float64")
    scores = model.predict(X)
    labels = decide_scores(scores, review, max(review, block))
    return [{"transaction_id": d["transaction_id"], "decided_at": d["decided_at"], "source": d.get("source", "api"),
             "customer_key": d.get("customer_key"), "champion_version": d["model_version"], "champion_score": float(d["score"]),
             "champion_decision": d["decision"], "challenger_version": version, "challenger_score": float(s),
             "challenger_decision": str(label)} for d, s, label in zip(usable, scores, labels)]


class ShadowLog:
    """``<table>_shadow`` next to the decision log (same backend); a re-scored transaction keeps its latest row."""

    def __init__(self, backend: Any) -> None:
        self.backend, self.table = backend, f"{backend.table}_shadow"
        cols = ", ".join(f"{c} {'DOUBLE PRECISION' if c.endswith('_score') else 'TEXT'}" + (" PRIMARY KEY" if c == "transaction_id" else "")
                         for c in SHADOW_COLUMNS)
        create_table(backend, self.table, f"CREATE TABLE IF NOT EXISTS {self.table} ({cols})")

    def write(self, rows: list[dict]) -> None:
        if not rows:
            return
        updates = ", ".join(f"{c} = excluded.{c}" for c in SHADOW_COLUMNS if c != "transaction_id")
        execute(self.backend, f"INSERT INTO {self.table} ({', '.join(SHADOW_COLUMNS)}) VALUES ({', '.join('?' * len(SHADOW_COLUMNS))}) "
                f"ON CONFLICT (transaction_id) DO UPDATE SET {updates}", many=[tuple(r[c] for c in SHADOW_COLUMNS) for r in rows])

    def read(self) -> pd.DataFrame:
        rows = execute(self.backend, f"SELECT {', '.join(SHADOW_COLUMNS)} FROM {self.table}", fetch=True)
        return pd.DataFrame(rows, columns=list(SHADOW_COLUMNS))


def challenger_holder(client_factory, model_name: str, refresh_seconds: float):
    """A hot-reloaded holder of the ``challenger`` alias that stays quiet while no challenger exists."""
    from fraud_platform.api.champion import ChampionHolder
    from spark_streaming.champion import NoChampionError

    class ChallengerHolder(ChampionHolder):
        def _failed(self, stage: str, error: Exception, version: str | None = None) -> None:
            if isinstance(error, NoChampionError):  # no challenger aliased: the normal case, not a failure
                self.last_error = str(error)
                return
            super()._failed(stage, error, version)

        def _run(self) -> None:  # the champion's holder retries every 2 s until loaded; a challenger can wait
            while not self._stop.wait(self.refresh_seconds):
                self.refresh()

    from fraud_platform.ml.registry import CHALLENGER_ALIAS

    return ChallengerHolder(client_factory, model_name, CHALLENGER_ALIAS, refresh_seconds)


class ShadowScorer:
    """Scores the API's decisions with the ``challenger`` alias on a background thread.

    ``challenger`` is a :class:`fraud_platform.api.champion.ChampionHolder` for the challenger
    alias (hot-reloaded like the champion). While no challenger exists, decisions are dropped
    here at no cost; a shadow failure is logged and never reaches a request.
    """

    def __init__(self, challenger, log_: ShadowLog, review: float | None, block: float, max_queue: int = 100_000) -> None:
        self.challenger, self.log, self.review, self.block = challenger, log_, review, block
        self.scored = self.failures = self.dropped = 0
        self._queue: queue.Queue[list[dict] | None] = queue.Queue(max_queue)
        self._thread = threading.Thread(target=self._run, name="shadow-scorer", daemon=True)
        self._thread.start()

    def submit(self, decisions: list[dict]) -> None:
        if not self.challenger.loaded:
            return
        try:
            self._queue.put_nowait(decisions)
        except queue.Full:  # bounded: shadow scoring never slows or grows the API
            self.dropped += len(decisions)

    def _run(self) -> None:
        from fraud_platform.api.engine import thresholds

        while True:
            decisions = self._queue.get()
            if decisions is None:
                return
            try:
                loaded = self.challenger.current()
                review, block = thresholds(loaded, self.review, self.block)
                rows = shadow_rows(decisions, loaded.model, loaded.version, list(loaded.info.features), review, block)
                self.log.write(rows)
                self.scored += len(rows)
            except Exception as error:
                self.failures += 1
                log.warning("shadow scoring of %d decisions failed: %s", len(decisions), error)
            finally:
                self._queue.task_done()

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until everything submitted is scored (tests, shutdown)."""
        done = threading.Event()
        threading.Thread(target=lambda: (self._queue.join(), done.set()), daemon=True).start()
        done.wait(timeout)

    def close(self) -> None:
        self.drain()
        self._queue.put(None)
        self._thread.join(timeout=10)


@dataclass(frozen=True)
class ShadowReport:
    labelled: int
    frauds: int
    champion_version: str
    challenger_version: str
    metrics: pd.DataFrame  # index champion/challenger; columns average_precision, card_precision_at_k, alerts_per_day
    agreement: float  # share of transactions with the same decision
    per_day: pd.DataFrame


def shadow_report(shadow: pd.DataFrame, labels: pd.DataFrame, k: int = 100, challenger_version: str | None = None) -> ShadowReport:
    """Champion vs challenger on shadow rows with known outcomes.

    ``labels``: ``transaction_id``, ``is_fraud`` (any fraud label known means fraud; unlabelled
    rows count as legitimate, so pass only rows old enough for their labels to have arrived).
    Card precision@k uses the customer as the card (the decision log's entity) per decision day.
    """
    rows = shadow if challenger_version is None else shadow[shadow["challenger_version"] == challenger_version]
    if challenger_version is None and len(rows):
        rows = rows[rows["challenger_version"] == rows["challenger_version"].iloc[-1]]
    fraud = labels.groupby("transaction_id")["is_fraud"].max().astype(int) if len(labels) else pd.Series(dtype=int)
    frame = rows.assign(is_fraud=rows["transaction_id"].map(fraud).fillna(0).astype(int),
                        event_date=rows["decided_at"].str[:10])
    result, per_day = {}, []
    for who in ("champion", "challenger"):
        score = frame[f"{who}_score"].to_numpy(dtype="float64")
        cp, daily = card_precision_top_k(frame.assign(score=score), k, card_col="customer_key") if len(frame) else (float("nan"), pd.DataFrame())
        alerts = frame[frame[f"{who}_decision"] != "approve"].groupby("event_date").size()
        result[who] = {"average_precision": average_precision(frame["is_fraud"].to_numpy(), score) if frame["is_fraud"].any() else float("nan"),
                       "card_precision_at_k": cp, "alerts_per_day": float(alerts.mean()) if len(alerts) else 0.0}
        if len(daily):
            per_day.append(daily.assign(model=who))
    agreement = float((frame["champion_decision"] == frame["challenger_decision"]).mean()) if len(frame) else float("nan")
    return ShadowReport(
        labelled=len(frame), frauds=int(frame["is_fraud"].sum()),
        champion_version=",".join(sorted(frame["champion_version"].astype(str).unique())),
        challenger_version=str(frame["challenger_version"].iloc[-1]) if len(frame) else "none",
        metrics=pd.DataFrame(result).T, agreement=agreement,
        per_day=pd.concat(per_day, ignore_index=True) if per_day else pd.DataFrame(),
    )


def live_promotion(report: ShadowReport, metric: str = "average_precision", margin: float = 0.0,
                   min_labelled: int = 100, min_frauds: int = 5) -> Decision:
    """Promote the challenger only on enough live evidence that it beats the champion by > margin."""
    if report.labelled < min_labelled or report.frauds < min_frauds:
        return Decision(False, f"not enough live evidence: {report.labelled} labelled shadow rows ({min_labelled} needed), "
                               f"{report.frauds} frauds ({min_frauds} needed)")
    champion, challenger = report.metrics.loc["champion", metric], report.metrics.loc["challenger", metric]
    if challenger > champion + margin:
        return Decision(True, f"live {metric} {challenger:.4f} > champion {champion:.4f} + {margin} on {report.labelled} shadow rows")
    return Decision(False, f"live {metric} {challenger:.4f} does not beat champion {champion:.4f} + {margin} on {report.labelled} shadow rows")
