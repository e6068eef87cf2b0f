"""Builds the decision API from the platform settings and runs it on uvicorn.

``fraud-platform serve`` and ``python -m fraud_platform.api`` end here. With ``--workers N``
uvicorn starts N processes, each building its own app (:func:`app_from_env`): its own champion
holder, store connection and metrics, sharing the decision log file/table and the rate-limit
counters (in the online store's Redis).
"""

from __future__ import annotations

import logging
import sys

from fastapi import FastAPI

from fraud_platform.settings import ApiSettings, PlatformSettings

log = logging.getLogger("fraud_platform.api")


class StartupError(RuntimeError):
    """A configuration problem that stops the server before it binds, said in one line."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def preflight(platform: PlatformSettings, settings: ApiSettings):
    """(API keys, online store client) or a :class:`StartupError`: what must be right before serving."""
    from fraud_platform.api.auth import KeyRing
    from fraud_platform.infra.online_store import OnlineFeatureStore, OnlineStoreUnavailable

    try:
        keys = KeyRing.from_config(settings.api_keys.get_secret_value() if settings.api_keys else None, settings.api_keys_file)
    except (OSError, ValueError) as error:
        raise StartupError(f"API keys: {error}", 2) from None
    if not len(keys):
        raise StartupError("no API keys configured: set FRAUD_API_KEYS or FRAUD_API_KEYS_FILE (`fraud-platform api-key NAME` makes one)", 2)
    try:
        return keys, OnlineFeatureStore.from_settings(platform)
    except OnlineStoreUnavailable as error:
        raise StartupError(str(error), 3) from None


def app_from_env() -> FastAPI:
    """The app wired to the configured registry, online store and decision log (uvicorn factory)."""
    from mlflow import MlflowClient

    from fraud_platform.api.app import create_app
    from fraud_platform.api.auth import SharedRateLimiter
    from fraud_platform.api.champion import ChampionHolder
    from fraud_platform.infra.decision_log import DecisionLog
    from fraud_platform.api.engine import DecisionEngine
    from fraud_platform.api.metrics import ApiMetrics
    from fraud_platform.infra.online_store import OnlineStoreUnavailable

    import mlflow

    platform, settings = PlatformSettings.from_env(), ApiSettings.from_env()
    keys, store = preflight(platform, settings)
    # A background thread (decision log writer, shadow scorer, champion refresh) busy in Python
    # code keeps the event loop waiting for the GIL up to the switch interval: 5 ms by default.
    sys.setswitchinterval(0.0005)
    # models:/ URIs resolve through MLflow's process-wide URIs: point them at the platform's registry
    registry_uri = platform.mlflow.resolved_registry_uri
    mlflow.set_tracking_uri(platform.mlflow.tracking_uri)
    mlflow.set_registry_uri(registry_uri)
    metrics = ApiMetrics()
    champion = ChampionHolder(
        lambda: MlflowClient(platform.mlflow.tracking_uri, registry_uri),
        platform.mlflow.model_name, settings.model_alias, settings.model_refresh_seconds,
        on_failure=lambda stage: metrics.refresh_failures.labels(stage).inc(),
        on_loaded=lambda loaded: metrics.model_loaded(loaded.name, loaded.version),
    )
    if not champion.refresh():  # not fatal: /readyz says why, and the refresh thread retries
        log.warning("decision API started without a model: %s", champion.last_error)
    champion.start()
    decision_log = DecisionLog.from_settings(settings.decision_log)
    from fraud_platform.console.wiring import Console  # the analyst console, mounted under /console
    from fraud_platform.ml.shadow import ShadowLog, ShadowScorer, challenger_holder

    console = Console.from_settings(platform, decision_log)
    challenger = challenger_holder(champion._client_factory, platform.mlflow.model_name, settings.model_refresh_seconds)
    challenger.refresh()
    challenger.start()
    shadow = ShadowScorer(challenger, ShadowLog(decision_log.backend), settings.review_threshold, settings.block_threshold)

    def decided(decisions: list[dict]) -> None:
        decision_log.write(decisions)
        shadow.submit(decisions)  # the challenger scores them too, off the request path, never acted on

    limiter = SharedRateLimiter(store, settings.rate_limit_per_second, settings.rate_limit_burst)
    engine = DecisionEngine(
        champion, store, settings.review_threshold, settings.block_threshold, settings.reasons,
        on_decided=decided, unavailable_errors=(OnlineStoreUnavailable,), limiter=limiter,
    )

    def shutdown() -> None:
        console.close()
        challenger.stop()
        shadow.close()
        champion.stop()
        decision_log.close()
        store.close()

    log.info("decision API: model %s@%s, store %s, decision log %s, %d key(s)", platform.mlflow.model_name,
             settings.model_alias, store.description, decision_log.kind, len(keys))
    app = create_app(
        keys=keys, limiter=limiter, engine=engine,
        decision_log=decision_log, store_ping=lambda: store.async_client().ping(), max_body_bytes=settings.max_body_bytes,
        max_batch=settings.max_batch, metrics=metrics, on_shutdown=shutdown,
    )
    console.mount(app, keys)
    return app


def serve(host: str | None = None, port: int | None = None, workers: int | None = None) -> None:
    """Run uvicorn (blocking); a startup problem exits with one line and its code."""
    import uvicorn

    from fraud_platform.security import MissingSecretError, secure_process_start

    try:  # python -m fraud_platform.api (the image's command) does not pass through the CLI's start-up
        secure_process_start()  # private file modes; no tokenisation key outside local -> no start
    except MissingSecretError as error:
        print(f"fraud-platform serve: configuration error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    settings = ApiSettings.from_env()
    host, port, workers = host or settings.host, settings.port if port is None else port, workers or settings.workers
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Access logs stay off: a path (/v1/transactions/{id}) is client input and must never be logged raw.
    options = dict(host=host, port=port, access_log=False, log_level="info", http="httptools", loop="uvloop")
    try:
        if workers == 1:
            uvicorn.run(app_from_env(), **options)
        else:
            preflight(PlatformSettings.from_env(), settings)  # fail fast, in one line, before starting workers
            uvicorn.run("fraud_platform.api.server:app_from_env", factory=True, workers=workers, **options)
    except StartupError as error:
        print(f"fraud-platform serve: {error}", file=sys.stderr)
        raise SystemExit(error.code)


if __name__ == "__main__":  # python -m fraud_platform.api.server
    serve()
