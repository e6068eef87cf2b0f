"""The console's routes, mounted on the decision API app by :func:`mount_console`.

Authentication is the API's: an analyst signs in with their API key (``read`` scope), checked by
the API's :class:`KeyRing`; the key's name is the analyst's name on every verdict and audit entry.
The browser then holds a signed session cookie (HMAC-SHA256, HttpOnly, SameSite=Strict) carrying
only the name and the expiry, never the key. Set ``FRAUD_CONSOLE_SESSION_SECRET`` when several API
workers serve the console, so each accepts the others' cookies.

Pages are Jinja2 templates; ``static/console.js`` (a few lines, no framework) refreshes the parts
marked ``data-refresh`` and re-queries the alert list when a filter changes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from pathlib import Path
from typing import Any, Callable

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from fraud_platform.api.auth import AuthError, KeyRing
from fraud_platform.console.store import ALERT_DECISIONS, VERDICTS, AlertFilter, AlreadyClosed, ConsoleStore
from fraud_platform.domain.metrics import score_shares
from fraud_platform.domain.validation import looks_like_pan

log = logging.getLogger("fraud_platform.console")

HERE = Path(__file__).parent
COOKIE = "fp_console"
SCORE_BINS = 10


class Sessions:
    """Signed ``name|expiry`` cookies."""

    def __init__(self, secret: bytes | None, hours: float) -> None:
        self.secret = secret or secrets.token_bytes(32)
        self.seconds = int(hours * 3600)

    def _sign(self, payload: bytes) -> str:
        return hmac.new(self.secret, payload, hashlib.sha256).hexdigest()

    def issue(self, analyst: str) -> str:
        payload = f"{analyst}|{int(time.time()) + self.seconds}".encode()
        return base64.urlsafe_b64encode(payload).decode() + "." + self._sign(payload)

    def analyst(self, cookie: str | None) -> str | None:
        if not cookie or "." not in cookie:
            return None
        encoded, signature = cookie.rsplit(".", 1)
        try:
            payload = base64.urlsafe_b64decode(encoded.encode())
        except (ValueError, TypeError):
            return None
        if not hmac.compare_digest(self._sign(payload), signature):
            return None
        name, _, expiry = payload.decode(errors="replace").rpartition("|")
        return name if expiry.isdigit() and int(expiry) > time.time() else None


class NotSignedIn(Exception):
    pass


def score_histogram(scores: list[float], bins: int = SCORE_BINS) -> list[dict[str, Any]]:
    """Share of scores per equal-width bin of [0, 1], as table rows."""
    return [{"low": i / bins, "high": (i + 1) / bins, "share": share} for i, share in enumerate(score_shares(scores, bins))]


def mount_console(app: FastAPI, *, keys: KeyRing, store: ConsoleStore, champion=None, registry: Callable[[], dict] | None = None,
                  dead_letters: Callable[[], list[dict]] | None = None, on_verdict: Callable[[], None] = lambda: None,
                  session_secret: bytes | None = None, session_hours: float = 12.0, refresh_seconds: float = 5.0,
                  prefix: str = "/console") -> None:
    """Add the console's pages under ``prefix`` to the API app (the API's own routes are untouched).

    ``registry()`` returns champion/challenger facts for the overview, ``dead_letters()`` rows of
    ``{day, rule, count}``, ``on_verdict()`` wakes the label publisher.
    """
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(prefix=prefix, refresh_seconds=refresh_seconds, verdicts=VERDICTS, alert_decisions=ALERT_DECISIONS)
    sessions = Sessions(session_secret, session_hours)
    app.mount(f"{prefix}/static", StaticFiles(directory=str(HERE / "static")), name="console-static")

    @app.exception_handler(NotSignedIn)
    async def to_login(request: Request, _: NotSignedIn) -> Response:
        return RedirectResponse(f"{prefix}/login", status_code=303)

    def analyst_of(request: Request) -> str:
        name = sessions.analyst(request.cookies.get(COOKIE))
        if name is None:
            raise NotSignedIn()
        return name

    def page(request: Request, name: str, analyst: str | None, status: int = 200, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, name, {"analyst": analyst, **context}, status_code=status)

    def alert_filter(request: Request) -> AlertFilter:
        q = request.query_params

        def number(name: str) -> float | None:
            try:
                return float(q[name]) if q.get(name) else None
            except ValueError:
                return None

        return AlertFilter(decision=q.get("decision") or None, min_score=number("min_score"), day=q.get("day") or None,
                           channel=q.get("channel") or None, country=q.get("country") or None)

    def queue_of(f: AlertFilter) -> list[dict[str, Any]]:
        alerts = store.open_alerts(f)
        store.activity_counts(alerts)
        return alerts

    @app.get(f"{prefix}/login", response_class=HTMLResponse, include_in_schema=False)
    async def login_page(request: Request) -> HTMLResponse:
        return page(request, "login.html", None)

    @app.post(f"{prefix}/login", include_in_schema=False)
    async def login(request: Request, api_key: str = Form(...)) -> Response:
        try:
            name = keys.authenticate(api_key.strip(), "read").name
        except AuthError as error:
            return page(request, "login.html", None, status=error.status, error=str(error))
        store.audit(name, "login")
        response = RedirectResponse(f"{prefix}/", status_code=303)
        response.set_cookie(COOKIE, sessions.issue(name), max_age=sessions.seconds, httponly=True, samesite="strict", path=prefix)
        return response

    @app.post(f"{prefix}/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        response = RedirectResponse(f"{prefix}/login", status_code=303)
        response.delete_cookie(COOKIE, path=prefix)
        return response

    @app.get(f"{prefix}/", response_class=HTMLResponse, include_in_schema=False)
    async def queue_page(request: Request) -> HTMLResponse:
        analyst = analyst_of(request)
        f = alert_filter(request)
        return page(request, "queue.html", analyst, alerts=queue_of(f), filter=f)

    @app.get(f"{prefix}/alerts", response_class=HTMLResponse, include_in_schema=False)
    async def queue_rows(request: Request) -> HTMLResponse:
        """The queue's table body alone (the live refresh swaps it in)."""
        analyst = analyst_of(request)
        return page(request, "_alerts.html", analyst, alerts=queue_of(alert_filter(request)))

    @app.get(f"{prefix}/search", include_in_schema=False)
    async def search(request: Request, id: str = "") -> Response:
        analyst = analyst_of(request)
        tid = id.strip()
        if tid and not looks_like_pan(tid) and store.transaction(tid) is not None:
            return RedirectResponse(f"{prefix}/transactions/{tid}", status_code=303)
        error = "a card number is not a transaction id" if looks_like_pan(tid) else f"no decision stored for {tid!r}" if tid else None
        return page(request, "search.html", analyst, status=404 if error else 200, error=error)

    def transaction_context(transaction_id: str) -> dict[str, Any]:
        row = store.transaction(transaction_id)
        if row is None:
            return {}
        return {"tx": row, "verdict": store.verdict(transaction_id), "trail": store.audit_trail(transaction_id),
                "customer_activity": store.recent_activity("customer_key", row["customer_key"]),
                "terminal_activity": store.recent_activity("terminal_id", row["terminal_id"])}

    @app.get(f"{prefix}/transactions/{{transaction_id}}", response_class=HTMLResponse, include_in_schema=False)
    async def transaction_page(request: Request, transaction_id: str) -> HTMLResponse:
        analyst = analyst_of(request)
        if looks_like_pan(transaction_id):
            return page(request, "search.html", analyst, status=422, error="a card number is not a transaction id")
        context = transaction_context(transaction_id)
        if not context:
            return page(request, "search.html", analyst, status=404, error=f"no decision stored for {transaction_id!r}")
        store.audit(analyst, "view", transaction_id)
        context["trail"] = store.audit_trail(transaction_id)
        return page(request, "transaction.html", analyst, **context)

    @app.post(f"{prefix}/transactions/{{transaction_id}}/verdict", include_in_schema=False)
    async def verdict(request: Request, transaction_id: str, verdict: str = Form(...), note: str = Form("")) -> Response:
        analyst = analyst_of(request)
        context = transaction_context(transaction_id)
        if not context:
            return page(request, "search.html", analyst, status=404, error=f"no decision stored for {transaction_id!r}")
        if verdict not in VERDICTS:
            return page(request, "transaction.html", analyst, status=422, error=f"verdict {verdict!r} is not one of {list(VERDICTS)}", **context)
        try:
            store.close_alert(transaction_id, verdict, note, analyst)
        except AlreadyClosed as closed:
            return page(request, "transaction.html", analyst, status=409, error=str(closed), **transaction_context(transaction_id))
        on_verdict()
        return RedirectResponse(f"{prefix}/?closed={transaction_id}", status_code=303)

    @app.get(f"{prefix}/overview", response_class=HTMLResponse, include_in_schema=False)
    async def overview(request: Request) -> HTMLResponse:
        analyst = analyst_of(request)
        counts = store.verdict_counts()
        judged = counts.get("fraud", 0) + counts.get("legitimate", 0)
        per_day: dict[str, dict[str, int]] = {}
        for row in store.alerts_per_day():
            per_day.setdefault(row["day"], {})[row["decision"]] = int(row["alerts"])
        peak = max([sum(d.values()) for d in per_day.values()] or [1])
        facts: dict[str, Any] = {}
        if registry is not None:
            try:
                facts = registry()
            except Exception as error:  # the overview still renders; it says what is missing
                facts = {"error": f"registry unavailable: {type(error).__name__}: {error}"[:300]}
        letters: list[dict] | str = []
        if dead_letters is not None:
            try:
                letters = dead_letters()
            except Exception as error:
                letters = f"dead letters unavailable: {type(error).__name__}: {error}"[:300]
        return page(request, "overview.html", analyst, counts=counts, judged=judged,
                    precision=(counts.get("fraud", 0) / judged) if judged else None,
                    per_day=sorted(per_day.items(), reverse=True), peak=peak,
                    live_histogram=score_histogram(store.live_scores()), facts=facts, dead_letters=letters,
                    recent_verdicts=store.recent_verdicts(), trail=store.audit_trail(limit=30))
