"""The console's tables beside the decision log (same SQLite file or Postgres database), and the
queries the pages need.

- ``<decisions>_verdicts``: one row per closed alert (PRIMARY KEY transaction_id, so an alert is
  closed once even with two analysts clicking at the same time), with the analyst, time, note and
  whether its label was published yet (an outbox: a label is never lost when the broker is down).
- ``<decisions>_audit``: every analyst action (login, view, verdict, refused second verdict), append-only.

SQL is kept to what SQLite and PostgreSQL share (ISO timestamps as TEXT, ``substr`` for days).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from fraud_platform.domain.card_data import mask_pans
from fraud_platform.infra.decision_log import COLUMNS, DecisionLog
from fraud_platform.infra.decision_tables import create_table, execute

VERDICTS = ("fraud", "legitimate", "unsure")
ALERT_DECISIONS = ("review", "block")


class AlreadyClosed(Exception):
    """The alert already has a verdict; carries the existing one."""

    def __init__(self, existing: dict[str, Any]) -> None:
        super().__init__(f"alert {existing['transaction_id']} was already closed as {existing['verdict']!r} "
                         f"by {existing['analyst']} at {existing['decided_at']}")
        self.existing = existing


@dataclass(frozen=True)
class AlertFilter:
    decision: str | None = None
    min_score: float | None = None
    day: str | None = None  # YYYY-MM-DD of the decision
    channel: str | None = None
    country: str | None = None
    limit: int = 100


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


class ConsoleStore:
    """Reads the decision log's table and owns the verdict and audit tables next to it."""

    def __init__(self, decision_log: DecisionLog) -> None:
        self.log = decision_log
        self.backend = decision_log.backend
        self.decisions = self.backend.table
        self.verdicts = f"{self.decisions}_verdicts"
        self.audit_table = f"{self.decisions}_audit"
        create_table(self.backend, self.verdicts, f"CREATE TABLE IF NOT EXISTS {self.verdicts} (transaction_id TEXT PRIMARY KEY, "
                     "verdict TEXT NOT NULL, note TEXT, analyst TEXT NOT NULL, decided_at TEXT NOT NULL, label_published_at TEXT)")
        create_table(self.backend, self.audit_table, f"CREATE TABLE IF NOT EXISTS {self.audit_table} (id TEXT PRIMARY KEY, "
                     "at TEXT NOT NULL, analyst TEXT NOT NULL, action TEXT NOT NULL, transaction_id TEXT, detail TEXT)")

    # -- plumbing -----------------------------------------------------------------------------
    def _execute(self, sql: str, params: tuple = (), fetch: bool = False) -> list[tuple]:
        return execute(self.backend, sql, params, fetch)

    def _rows(self, sql: str, params: tuple, columns: tuple[str, ...]) -> list[dict[str, Any]]:
        rows = [dict(zip(columns, r)) for r in self._execute(sql, params, fetch=True)]
        for row in rows:
            if isinstance(row.get("reasons"), str):
                row["reasons"] = json.loads(row["reasons"])
        return rows

    # -- audit --------------------------------------------------------------------------------
    def audit(self, analyst: str, action: str, transaction_id: str | None = None, detail: str = "") -> None:
        self._execute(f"INSERT INTO {self.audit_table} (id, at, analyst, action, transaction_id, detail) VALUES (?, ?, ?, ?, ?, ?)",
                      (uuid.uuid4().hex, now_iso(), analyst, action, transaction_id, mask_pans(detail[:2000])))

    def audit_trail(self, transaction_id: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        where, params = ("WHERE transaction_id = ?", (transaction_id,)) if transaction_id else ("", ())
        return self._rows(f"SELECT at, analyst, action, transaction_id, detail FROM {self.audit_table} {where} "
                          f"ORDER BY at DESC LIMIT {int(limit)}", params, ("at", "analyst", "action", "transaction_id", "detail"))

    # -- alerts -------------------------------------------------------------------------------
    def open_alerts(self, f: AlertFilter) -> list[dict[str, Any]]:
        """Review/block decisions without a verdict, newest first."""
        self.log.flush(timeout=2)
        clauses, params = [f"d.decision IN ('review', 'block')", "v.transaction_id IS NULL"], []
        if f.decision in ALERT_DECISIONS:
            clauses.append("d.decision = ?"), params.append(f.decision)
        if f.min_score is not None:
            clauses.append("d.score >= ?"), params.append(float(f.min_score))
        if f.day:
            clauses.append("substr(d.decided_at, 1, 10) = ?"), params.append(f.day)
        if f.channel:
            clauses.append("d.channel = ?"), params.append(f.channel)
        if f.country:
            clauses.append("d.country = ?"), params.append(f.country)
        cols = ", ".join(f"d.{c}" for c in COLUMNS)
        return self._rows(f"SELECT {cols} FROM {self.decisions} d LEFT JOIN {self.verdicts} v ON v.transaction_id = d.transaction_id "
                          f"WHERE {' AND '.join(clauses)} ORDER BY d.decided_at DESC, d.transaction_id LIMIT {int(f.limit)}",
                          tuple(params), COLUMNS)

    def recent_activity(self, column: str, value: str, limit: int = 10) -> list[dict[str, Any]]:
        """The latest decisions of one customer or terminal (``column`` is a fixed name, never input)."""
        assert column in ("customer_key", "terminal_id")
        cols = ("transaction_id", "event_time", "amount_eur", "score", "decision", "channel", "country")
        return self._rows(f"SELECT {', '.join(cols)} FROM {self.decisions} WHERE {column} = ? ORDER BY event_time DESC LIMIT {int(limit)}",
                          (value,), cols)

    def activity_counts(self, alerts: list[dict[str, Any]], hours: int = 24) -> None:
        """Add ``customer_recent``/``terminal_recent`` (decisions in the ``hours`` before each
        alert's event, itself excluded) to the queue's rows: two grouped queries for the whole page."""
        for column, key in (("customer_key", "customer_recent"), ("terminal_id", "terminal_recent")):
            values = sorted({a[column] for a in alerts if a.get(column)})
            rows = self._execute(f"SELECT {column}, event_time FROM {self.decisions} WHERE {column} IN ({', '.join('?' * len(values))})",
                                 tuple(values), fetch=True) if values else []
            times: dict[str, list[datetime]] = {}
            for value, event_time in rows:
                times.setdefault(value, []).append(datetime.fromisoformat(event_time))
            for a in alerts:
                at = datetime.fromisoformat(a["event_time"])
                a[key] = sum(1 for t in times.get(a[column], ()) if at - timedelta(hours=hours) <= t < at)

    def transaction(self, transaction_id: str) -> dict[str, Any] | None:
        row = self.log.get(transaction_id)
        if row and isinstance(row.get("features"), str):
            row["features"] = json.loads(row["features"])
        return row

    # -- verdicts -----------------------------------------------------------------------------
    def verdict(self, transaction_id: str) -> dict[str, Any] | None:
        rows = self._rows(f"SELECT transaction_id, verdict, note, analyst, decided_at, label_published_at FROM {self.verdicts} "
                          "WHERE transaction_id = ?", (transaction_id,), _VERDICT_COLUMNS)
        return rows[0] if rows else None

    def close_alert(self, transaction_id: str, verdict: str, note: str, analyst: str) -> dict[str, Any]:
        """Record the verdict once; a second one raises :class:`AlreadyClosed` (and is audited)."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict {verdict!r} is not one of {list(VERDICTS)}")
        at = now_iso()
        note = mask_pans(note[:2000])  # free text: an analyst may paste a card number (no full PAN at rest)
        inserted = self._execute(
            f"INSERT INTO {self.verdicts} (transaction_id, verdict, note, analyst, decided_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (transaction_id) DO NOTHING RETURNING transaction_id", (transaction_id, verdict, note, analyst, at), fetch=True)
        if not inserted:
            existing = self.verdict(transaction_id)
            self.audit(analyst, "verdict_refused", transaction_id, f"already closed as {existing['verdict']} by {existing['analyst']}")
            raise AlreadyClosed(existing)
        self.audit(analyst, "verdict", transaction_id, f"{verdict}: {note}")
        return self.verdict(transaction_id)

    def unpublished_labels(self) -> list[dict[str, Any]]:
        return self._rows(f"SELECT transaction_id, verdict, note, analyst, decided_at, label_published_at FROM {self.verdicts} "
                          "WHERE label_published_at IS NULL AND verdict IN ('fraud', 'legitimate') ORDER BY decided_at",
                          (), _VERDICT_COLUMNS)

    def mark_published(self, transaction_ids: list[str]) -> None:
        at = now_iso()
        for tid in transaction_ids:
            self._execute(f"UPDATE {self.verdicts} SET label_published_at = ? WHERE transaction_id = ?", (at, tid))

    # -- overview -----------------------------------------------------------------------------
    def alerts_per_day(self, days: int = 30) -> list[dict[str, Any]]:
        self.log.flush(timeout=2)
        return self._rows(f"SELECT substr(decided_at, 1, 10) AS day, decision, COUNT(*) FROM {self.decisions} "
                          "WHERE decision IN ('review', 'block') GROUP BY substr(decided_at, 1, 10), decision "
                          f"ORDER BY day DESC LIMIT {int(days) * 2}", (), ("day", "decision", "alerts"))

    def verdict_counts(self) -> dict[str, int]:
        rows = self._execute(f"SELECT verdict, COUNT(*) FROM {self.verdicts} GROUP BY verdict", fetch=True)
        return {v: int(n) for v, n in rows}

    def recent_verdicts(self, limit: int = 20) -> list[dict[str, Any]]:
        cols = ("transaction_id", "verdict", "analyst", "decided_at", "note", "score", "decision")
        return self._rows(f"SELECT v.transaction_id, v.verdict, v.analyst, v.decided_at, v.note, d.score, d.decision FROM {self.verdicts} v "
                          f"LEFT JOIN {self.decisions} d ON d.transaction_id = v.transaction_id ORDER BY v.decided_at DESC LIMIT {int(limit)}",
                          (), cols)

    def live_scores(self, limit: int = 50_000) -> list[float]:
        return [float(s) for (s,) in self._execute(f"SELECT score FROM {self.decisions} ORDER BY decided_at DESC LIMIT {int(limit)}", fetch=True)]


_VERDICT_COLUMNS = ("transaction_id", "verdict", "note", "analyst", "decided_at", "label_published_at")
