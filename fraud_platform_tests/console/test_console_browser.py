"""The analyst console in a real browser (Playwright driving Debian's Chromium) against a real API
process: sign in, find an alert, open it, confirm fraud, see it leave the queue and reach the
overview; the verdict becomes a valid label on the labels topic. Screenshots: the ``screenshots`` fixture."""

from __future__ import annotations

import html
import re
import time
from pathlib import Path

import orjson
import pytest

from fraud_platform.domain.schema import LabelEvent
from fraud_platform.domain.validation import LabelValidator
from fraud_platform.infra.kafka import read_range, topic_partitions
from fraud_platform_tests.api.conftest import request_body

pytestmark = pytest.mark.slow


def decide(server, key: str, n: int, **changes) -> list[dict]:
    with server.client(key) as client:
        out = []
        for i in range(n):
            response = client.post("/v1/decisions", json=request_body(i, **changes))
            assert response.status_code == 200, response.text
            out.append(response.json())
        return out


def labels_on_topic(kafka_settings) -> list[bytes]:
    topic = kafka_settings.topics.labels
    partitions = topic_partitions(kafka_settings, topic)
    return [m.value() for chunk, _ in read_range(kafka_settings, topic, {p: 0 for p in partitions}) for m in chunk]


def test_analyst_confirms_fraud_in_the_browser(console_server, keys, analyst_key, chromium_path, kafka_settings, screenshots):
    from playwright.sync_api import expect, sync_playwright

    decided = decide(console_server, keys.full, 3) + decide(console_server, keys.full, 1, channel="atm", country="DE")
    assert {d["decision"] for d in decided} <= {"review", "block"}  # review threshold 0: every decision is an alert
    target = decided[-1]["transaction_id"]
    base = f"{console_server.url}/console"

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        try:
            # Unauthenticated: any console page leads to the sign-in form; a wrong key is refused.
            page.goto(f"{base}/")
            expect(page).to_have_url(re.compile(r"/console/login$"))
            page.fill("#api_key", "fpk_not-a-key")
            page.click("#sign-in")
            expect(page.get_by_role("alert")).to_contain_text("unknown API key")
            page.screenshot(path=str(screenshots / "console-login.png"))
            page.fill("#api_key", analyst_key[0])
            page.click("#sign-in")
            expect(page.locator("#analyst")).to_have_text("alice")

            # The queue lists the open alerts, newest first, with reasons; filters narrow it live.
            rows = page.locator("#alert-rows tr.alert")
            expect(rows).to_have_count(4)
            expect(rows.first).to_have_attribute("data-transaction", target)
            expect(rows.first.locator(".reasons div").first).not_to_be_empty()
            page.select_option("select[name=decision]", decided[-1]["decision"])
            page.fill("input[name=country]", "DE")
            expect(rows).to_have_count(1)
            page.fill("input[name=country]", "")
            page.fill("input[name=channel]", "atm")
            expect(rows).to_have_count(1)
            page.fill("input[name=channel]", "")
            expect(rows).to_have_count(sum(d["decision"] == decided[-1]["decision"] for d in decided))
            page.select_option("select[name=decision]", "")
            # Live refresh: a decision made now appears without reloading the page.
            (late,) = decide(console_server, keys.full, 1)
            expect(page.locator(f"#alert-rows tr[data-transaction='{late['transaction_id']}']")).to_have_count(1, timeout=15_000)
            page.screenshot(path=str(screenshots / "console-queue.png"), full_page=True)

            # Search by id opens the transaction: decision, reasons, model version, feature values.
            page.click("#nav-search")
            page.fill("#search-id", target)
            page.screenshot(path=str(screenshots / "console-search.png"))
            page.click("#search-go")
            expect(page.locator("#tx-id")).to_have_text(target)
            expect(page.locator("#tx-model")).to_contain_text(f"version {decided[-1]['model']['version']}")
            expect(page.locator("#tx-reasons li")).to_have_count(len(decided[-1]["reasons"]))
            expect(page.locator("#tx-features tr")).not_to_have_count(0)
            expect(page.locator("#tx-features")).not_to_contain_text("not recorded")

            # Confirm fraud with a note: back on the queue, the alert is gone.
            page.fill("#verdict-note", "customer denies; card used abroad")
            page.screenshot(path=str(screenshots / "console-transaction.png"), full_page=True)
            page.click("#verdict-fraud")
            expect(page.locator("#closed-notice")).to_contain_text(target)
            expect(page.locator(f"#alert-rows tr[data-transaction='{target}']")).to_have_count(0)
            expect(rows).to_have_count(4)

            # The alert is closed once: a second verdict (another tab, a double click) is refused.
            second = page.request.post(f"{base}/transactions/{target}/verdict", form={"verdict": "legitimate", "note": "again"})
            assert second.status == 409 and "already closed as 'fraud' by alice" in html.unescape(second.text())

            # The transaction page now shows the verdict and the audit trail.
            page.goto(f"{base}/transactions/{target}")
            expect(page.locator("#verdict-closed")).to_contain_text("fraud by alice")
            expect(page.locator("#audit")).to_contain_text("verdict_refused")
            expect(page.locator("#audit")).to_contain_text("customer denies")

            # The overview counts it: 1 fraud of 1 judged = 100 % analyst-confirmed precision.
            page.click("#nav-overview")
            expect(page.locator("#precision")).to_contain_text("100.0%")
            expect(page.locator("#recent-verdicts")).to_contain_text(target)
            expect(page.locator("#champion")).to_contain_text("version 1")
            expect(page.locator("#alerts-per-day")).to_contain_text("review")
            expect(page.locator("#score-distribution")).to_contain_text("Test window (training)")
            expect(page.locator("#score-distribution tbody tr").first).to_contain_text("90.0%")  # the champion's tagged shares
            page.screenshot(path=str(screenshots / "console-overview.png"), full_page=True)
        finally:
            browser.close()
    for name in ("login", "queue", "search", "transaction", "overview"):
        assert (screenshots / f"console-{name}.png").read_bytes().startswith(b"\x89PNG"), name

    # The challenger (v2) scored every decision in shadow; the API acted on the champion (v1) only.
    from fraud_platform.infra.decision_log import SQLiteBackend
    from fraud_platform.ml.shadow import ShadowLog

    shadow = ShadowLog(SQLiteBackend(Path(console_server.env["FRAUD_DECISIONS_SQLITE_PATH"]), "api_decisions")).read().set_index("transaction_id")
    assert {d["model"]["version"] for d in decided} == {"1"}
    assert set(shadow.loc[[d["transaction_id"] for d in decided], "challenger_version"]) == {"2"}
    assert shadow.loc[target, "champion_score"] == pytest.approx(decided[-1]["score"])

    # The verdict is a label on the labels topic that the ingestion validator accepts.
    published = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not published:
        published = [v for v in labels_on_topic(kafka_settings) if orjson.loads(v)["transaction_id"] == target]
        time.sleep(0.5)
    assert len(published) == 1, "the verdict's label was not published"
    label = LabelValidator().parse(published[0])
    assert isinstance(label, LabelEvent), label
    assert (label.label_type, label.is_fraud) == ("analyst_confirmed", True)
