"""Console session cookies: the analyst's name comes back only from an untampered, unexpired
cookie signed with this console's secret."""

from __future__ import annotations

import base64

from fraud_platform.console.web import Sessions


def test_signed_cookie_round_trip_and_refusals(monkeypatch):
    sessions = Sessions(b"secret", hours=1)
    cookie = sessions.issue("alice")
    assert sessions.analyst(cookie) == "alice"
    assert Sessions(b"another-secret", hours=1).analyst(cookie) is None  # another console's cookie
    encoded, signature = cookie.rsplit(".", 1)
    forged = base64.urlsafe_b64encode(base64.urlsafe_b64decode(encoded).replace(b"alice", b"mallory")).decode()
    assert sessions.analyst(f"{forged}.{signature}") is None
    assert sessions.analyst(None) is None and sessions.analyst("garbage") is None and sessions.analyst("a.b") is None
    import fraud_platform.console.web as web

    later = web.time.time() + 3601
    monkeypatch.setattr(web.time, "time", lambda: later)
    assert sessions.analyst(cookie) is None  # expired
