"""The decision API's OpenAPI document, kept in ``docs/openapi.json``.

``python -m fraud_platform.api.openapi`` rewrites that file from the app; a test checks that the
served document equals it, so the published contract never drifts from the code.
"""

from __future__ import annotations

import json
from pathlib import Path

from fraud_platform.settings import ApiSettings

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def document() -> dict:
    """The OpenAPI document of an app built with the default limits (no model, store or keys needed)."""
    from fraud_platform.api.app import create_app
    from fraud_platform.api.auth import KeyRing, RateLimiter

    defaults = ApiSettings.model_fields
    app = create_app(keys=KeyRing([]), limiter=RateLimiter(1, 1), engine=None, decision_log=None, store_ping=lambda: None,
                     max_body_bytes=defaults["max_body_bytes"].default, max_batch=defaults["max_batch"].default)
    return app.openapi()


def main() -> None:
    DOCUMENT.write_text(json.dumps(document(), indent=2, sort_keys=True) + "\n")
    print(f"wrote {DOCUMENT}")


if __name__ == "__main__":
    main()
