"""The console's real parts: the decision API process (which serves the console) over the API
tests' registry, embedded Redis and the session's embedded broker, and Debian's Chromium driven by
Playwright (installed by ``python3.11 -m fraud_platform.bootstrap browser|test``; Playwright's own
browser download is not reachable here)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fraud_platform.api.auth import new_key
from fraud_platform.bootstrap import CHROMIUM, ensure_chromium
from fraud_platform.ml.registry import TAG_SCORE_SHARES
from fraud_platform_tests.streaming.conftest import MODEL_NAME
from fraud_platform_tests.api.conftest import api_env, api_registry, keys, seeded_store, start_server  # noqa: F401 (fixtures)

DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
REFRESH_DOCS_SCREENSHOTS = "FRAUD_REFRESH_DOC_SCREENSHOTS"  # =1: the browser test rewrites docs/images/
# The champion's test-window score distribution as champion_model tags it (shares per 0.1 bin).
TEST_WINDOW_SHARES = [0.9, 0.04, 0.02, 0.01, 0.01, 0.005, 0.005, 0.004, 0.003, 0.003]


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium; installed through the project's bootstrap when missing (root only)."""
    if not ensure_chromium():
        pytest.fail(f"{CHROMIUM} is missing: run `python3.11 -m fraud_platform.bootstrap browser` as root "
                    "(it runs `apt-get install -y chromium`)")
    return str(CHROMIUM)


@pytest.fixture()
def screenshots(tmp_path) -> Path:
    """Where the browser test saves its page screenshots: docs/images/ when asked to refresh the
    docs (``FRAUD_REFRESH_DOC_SCREENSHOTS=1``), else the test's own folder, so a test run leaves the
    checkout as it found it."""
    folder = DOCS_IMAGES if os.environ.get(REFRESH_DOCS_SCREENSHOTS) == "1" else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture()
def analyst_key(keys) -> tuple[str, str]:
    """(key, entry) of an analyst named alice with the read scope only: enough for the console."""
    return new_key("alice", ("read",))


@pytest.fixture()
def console_server(tmp_path, api_registry, keys, analyst_key, online_store_url, seeded_store, kafka_settings):
    """The API (and its console) with every decision an alert (review threshold 0), labels on the
    test's own labels topic, a 1 s live refresh and label retry; version 2 is the challenger in shadow."""
    api_registry.promote("1")
    api_registry.client.set_registered_model_alias(MODEL_NAME, "challenger", "2")
    api_registry.client.set_model_version_tag(MODEL_NAME, "1", TAG_SCORE_SHARES, json.dumps(TEST_WINDOW_SHARES))
    env = api_env(api_registry, keys, online_store_url, seeded_store.prefix, tmp_path,
                  FRAUD_API_KEYS=f"{keys.entries};{analyst_key[1]}", FRAUD_STREAM_REVIEW_THRESHOLD="0.0",
                  FRAUD_STREAM_BLOCK_THRESHOLD="0.999999", FRAUD_CONSOLE_REFRESH_SECONDS="1",
                  FRAUD_CONSOLE_LABEL_RETRY_SECONDS="1", FRAUD_KAFKA_BOOTSTRAP_SERVERS=kafka_settings.resolved_bootstrap())
    server = start_server(tmp_path, env)
    yield server
    server.stop()
    api_registry.client.delete_registered_model_alias(MODEL_NAME, "challenger")
