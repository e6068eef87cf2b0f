"""The console's tables on both decision-log backends (SQLite file, real PostgreSQL): the queue's
filters, an alert closed once (also under a race), the audit trail, the overview's aggregates and
the shadow table."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from fraud_platform.infra.decision_log import DecisionLog, PostgresBackend, SQLiteBackend
from fraud_platform.console.store import AlertFilter, AlreadyClosed, ConsoleStore
from fraud_platform.ml.shadow import ShadowLog
from fraud_platform_tests.console.test_verdict_labels import decision_row
from fraud_platform_tests.streaming.conftest import pg_dsn, transaction  # noqa: F401 (fixture)


@pytest.fixture(params=["sqlite", "postgres"])
def decision_log(request, tmp_path):
    if request.param == "sqlite":
        log = DecisionLog(SQLiteBackend(tmp_path / "d.sqlite", "decisions"))
    else:
        log = DecisionLog(PostgresBackend(request.getfixturevalue("pg_dsn"), "console_test.decisions"))
    yield log
    log.close()


def test_queue_filters_close_once_audit_and_overview(decision_log):
    now = datetime.now(timezone.utc)
    events = [transaction(i, when=now - timedelta(minutes=10 - i), prefix="cs") for i in range(6)]
    events[4]["channel"], events[4]["country"] = "atm", "DE"
    rows = [decision_row(e, decision) for e, decision in zip(events, ["review", "block", "approve", "review", "block", "review"])]
    for i, row in enumerate(rows):
        row["decided_at"] = (now - timedelta(minutes=10 - i)).isoformat()
        row["score"] = 0.1 * (i + 1)
    earlier = transaction(25, when=now - timedelta(minutes=30), prefix="cs")  # term-5 again, another customer
    decision_log.write(rows + [dict(decision_row(earlier, "approve"), decided_at=(now - timedelta(minutes=30)).isoformat())])
    store = ConsoleStore(decision_log)

    queue = store.open_alerts(AlertFilter())
    assert [a["transaction_id"] for a in queue] == [events[i]["transaction_id"] for i in (5, 4, 3, 1, 0)]  # newest first, no approve
    assert [a["transaction_id"] for a in store.open_alerts(AlertFilter(decision="block"))] == [events[i]["transaction_id"] for i in (4, 1)]
    assert [a["transaction_id"] for a in store.open_alerts(AlertFilter(country="DE", channel="atm"))] == [events[4]["transaction_id"]]
    assert len(store.open_alerts(AlertFilter(min_score=0.35))) == 3
    store.activity_counts(queue)  # decisions of the same customer/terminal in the 24 h before each alert
    by_id = {a["transaction_id"]: a for a in queue}
    assert (by_id[events[5]["transaction_id"]]["terminal_recent"], by_id[events[5]["transaction_id"]]["customer_recent"]) == (1, 0)
    assert (by_id[events[0]["transaction_id"]]["terminal_recent"], by_id[events[0]["transaction_id"]]["customer_recent"]) == (0, 0)
    assert store.open_alerts(AlertFilter(day="1999-01-01")) == []

    # Two analysts close the same alert at once: exactly one verdict wins, the other is refused.
    target = events[5]["transaction_id"]
    outcomes: list[str] = []

    def close(analyst: str, verdict: str) -> None:
        try:
            store.close_alert(target, verdict, f"by {analyst}", analyst)
            outcomes.append("closed")
        except AlreadyClosed as error:
            outcomes.append(f"refused: {error.existing['analyst']}")

    threads = [threading.Thread(target=close, args=(a, v)) for a, v in (("alice", "fraud"), ("bob", "legitimate"))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(outcomes)[0] == "closed" and sorted(outcomes)[1].startswith("refused")
    assert target not in [a["transaction_id"] for a in store.open_alerts(AlertFilter())]
    actions = [e["action"] for e in store.audit_trail(target)]
    assert sorted(actions) == ["verdict", "verdict_refused"]

    store.close_alert(events[4]["transaction_id"], "legitimate", "", "carol")
    store.close_alert(events[3]["transaction_id"], "unsure", "", "carol")
    counts = store.verdict_counts()
    assert sum(counts.values()) == 3 and counts["unsure"] == 1
    assert {v["transaction_id"] for v in store.unpublished_labels()} == {target, events[4]["transaction_id"]}  # unsure: no label
    store.mark_published([target])
    assert [v["transaction_id"] for v in store.unpublished_labels()] == [events[4]["transaction_id"]]
    per_day = {(r["day"], r["decision"]): r["alerts"] for r in store.alerts_per_day()}
    assert per_day[(now.date().isoformat(), "review")] + per_day[(now.date().isoformat(), "block")] == 5
    assert len(store.live_scores()) == 7
    assert [a["transaction_id"] for a in store.recent_activity("terminal_id", events[5]["terminal_id"])] == [
        events[5]["transaction_id"], earlier["transaction_id"]]

    shadow = ShadowLog(decision_log.backend)
    shadow.write([{"transaction_id": r["transaction_id"], "decided_at": r["decided_at"], "source": "api", "customer_key": r["customer_key"],
                   "champion_version": "1", "champion_score": r["score"], "champion_decision": r["decision"],
                   "challenger_version": "2", "challenger_score": 1 - r["score"], "challenger_decision": "review"} for r in rows])
    read = shadow.read().set_index("transaction_id")
    assert len(read) == 6 and read.loc[target, "challenger_score"] == pytest.approx(1 - rows[5]["score"])


def test_tables_beside_the_decision_log_are_created_under_its_advisory_lock(pg_dsn):
    """Several API workers start at once: the console's verdict and audit tables and the shadow table
    are created under the same advisory lock on the table name as the decision log's and the alert
    store's tables (``decision_log.create_tables_locked``), so a second creator waits for the first
    instead of colliding in the catalog. Checked deterministically: while this test holds the lock, the
    creator is seen waiting for it in ``pg_locks`` and the table appears only after the release."""
    import time

    import psycopg

    log = DecisionLog(PostgresBackend(pg_dsn, "race.decisions"))
    creators = {"race.decisions_verdicts": lambda: ConsoleStore(log), "race.decisions_audit": lambda: ConsoleStore(log),
                "race.decisions_shadow": lambda: ShadowLog(log.backend)}
    try:
        for table, create in creators.items():
            errors: list[BaseException] = []
            worker = threading.Thread(target=lambda: _capture(create, errors))
            with psycopg.connect(pg_dsn, autocommit=True) as holder:
                exists = lambda: holder.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is not None  # noqa: E731
                with holder.transaction():
                    holder.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (table,))
                    worker.start()
                    waiting = False
                    while worker.is_alive() and not waiting:  # ends either way: the creator waits, or it finished unlocked
                        waiting = holder.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                                                 "AND pid <> pg_backend_pid()").fetchone()[0] > 0
                        time.sleep(0.02)
                    assert waiting and worker.is_alive(), f"{table} was created without waiting for the lock"
                worker.join(60)
                assert not errors and exists(), (table, errors)
    finally:
        log.close()


def _capture(create, errors: list) -> None:
    try:
        create()
    except BaseException as error:  # surfaced by the test thread
        errors.append(error)


def test_a_card_number_typed_into_a_verdict_note_is_masked_before_it_is_stored(decision_log, tmp_path):
    from fraud_platform.domain.card_data import contains_pan
    from fraud_platform_tests.hostile import pans_in_files

    event = transaction(1, prefix="pan-note")
    decision_log.write([decision_row(event, "block")])
    store = ConsoleStore(decision_log)
    note = "customer called: card 4539 1488 0343 6467 stolen, also 4539148803436467"
    closed = store.close_alert(event["transaction_id"], "fraud", note, "alice")
    assert closed["note"] == "customer called: card 4539 14** **** 6467 stolen, also 453914******6467"
    trail = store.audit_trail(event["transaction_id"])
    assert trail and not any(contains_pan(str(entry["detail"])) for entry in trail)
    assert not any(contains_pan(str(v["note"])) for v in store.recent_verdicts())
    assert pans_in_files(tmp_path) == []  # the SQLite file (the Postgres rows are checked above)
