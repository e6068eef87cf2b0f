"""The FastAPI application: routes, authentication, rate limit, size limit, metrics.

Build it with :func:`create_app` (``fraud-platform serve`` runs it on uvicorn). Request bodies are
read raw and validated by the ingestion validator, not by FastAPI, so a bad request gets the
platform's rule/field/value (422) instead of FastAPI's own error shape; the OpenAPI document still
describes the event schema (``openapi_extra``) and is kept in ``docs/openapi.json``.
"""

from __future__ import annotations

import inspect
import logging
import time
from contextlib import asynccontextmanager
from typing import Any, Literal

import orjson
from fastapi import FastAPI, Request, Security
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from starlette.requests import ClientDisconnect
from pydantic import BaseModel, Field

from fraud_platform.api.auth import AuthError, KeyRing, RateLimiter
from fraud_platform.api.engine import Batcher, DecisionEngine, RateLimited, StoreUnavailable, masked, parse
from fraud_platform.api.metrics import ApiMetrics
from fraud_platform.domain.schema import TransactionEvent
from fraud_platform.domain.card_data import looks_like_pan, mask_pans
from fraud_platform.domain.validation import Rejection, TransactionValidator
from spark_streaming.champion import NoChampionError

log = logging.getLogger("fraud_platform.api")

# -- response documents (OpenAPI) ---------------------------------------------------------------


class ReasonOut(BaseModel):
    feature: str
    value: float
    contribution: float = Field(description="Log-odds contribution to the score (> 0 raises it)")
    direction: Literal["raises", "lowers"]
    text: str


class ModelOut(BaseModel):
    name: str
    version: str


class DecisionOut(BaseModel):
    transaction_id: str
    score: float = Field(description="Fraud probability from the champion")
    decision: Literal["approve", "review", "block"]
    threshold: float = Field(description="Review threshold (score >= threshold -> review)")
    block_threshold: float
    model: ModelOut
    feature_state_version: str
    reasons: list[ReasonOut]
    latency_ms: float = Field(description="Server-side time from request to decision")
    decided_at: str


class ErrorDetail(BaseModel):
    rule: str
    field: str | None = None
    value: str | None = None
    message: str


class ErrorOut(BaseModel):
    error: ErrorDetail


class BatchItemOut(BaseModel):
    index: int
    status: Literal[200, 422]
    decision: DecisionOut | None = None
    error: ErrorDetail | None = None


class BatchOut(BaseModel):
    results: list[BatchItemOut]
    latency_ms: float


class StoredDecisionOut(DecisionOut):
    source: Literal["api", "stream"]
    event_time: str
    amount_eur: float


class ApiError(Exception):
    def __init__(self, status: int, rule: str, message: str, field: str | None = None, value: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.detail, self.headers = status, ErrorDetail(rule=rule, field=field, value=value, message=message), headers


def _json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status, media_type="application/json", headers=headers)


def decision_document(d: dict) -> dict:
    return {
        "transaction_id": d["transaction_id"], "score": d["score"], "decision": d["decision"],
        "threshold": d["threshold"], "block_threshold": d["block_threshold"],
        "model": {"name": d["model_name"], "version": d["model_version"]},
        "feature_state_version": d["feature_state_version"], "reasons": d["reasons"],
        "latency_ms": round(d["latency_ms"], 3), "decided_at": d["decided_at"],
    }


_ERRORS = {401: {"model": ErrorOut, "description": "missing or unknown API key"},
           403: {"model": ErrorOut, "description": "the key lacks the scope"},
           413: {"model": ErrorOut, "description": "request body too large"},
           429: {"model": ErrorOut, "description": "rate limit exceeded (see Retry-After)"},
           503: {"model": ErrorOut, "description": "no model loaded or online store unreachable"}}
_EVENT_SCHEMA = TransactionEvent.model_json_schema(ref_template="#/components/schemas/{model}")
_BATCH_SCHEMA = {"type": "object", "required": ["transactions"], "additionalProperties": False,
                 "properties": {"transactions": {"type": "array", "items": _EVENT_SCHEMA, "minItems": 1}}}


def presented_key(headers) -> str | None:
    """The API key of ``X-API-Key`` or ``Authorization: Bearer`` (as ``APIKeyHeader``/``HTTPBearer`` read them)."""
    key = headers.get("x-api-key")
    if key:
        return key
    scheme, token = get_authorization_scheme_param(headers.get("authorization"))
    return token if scheme.lower() == "bearer" and token else None


_DECIDE_HEADERS = {b"x-api-key": "x-api-key", b"authorization": "authorization", b"content-length": "content-length"}


def decide_headers(scope) -> dict[str, str]:
    """The headers the decision route reads, from the raw ASGI scope (first occurrence, as
    Starlette's ``Headers.get`` returns it), without building Starlette's header objects."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        wanted = _DECIDE_HEADERS.get(name)
        if wanted is not None and wanted not in found:
            found[wanted] = value.decode("latin-1")
    return found


class DecisionApp(FastAPI):
    """FastAPI, with ``POST /v1/decisions`` (the hot path) answered by a plain ASGI handler ahead
    of the framework: Starlette's middleware stack, routing and request objects were ~30% of a
    worker's CPU at the maximum rate (py-spy). The route stays declared in FastAPI (the OpenAPI document, and
    the same handler behind it if a request ever reaches it, e.g. under a ``root_path``)."""

    decide_asgi = None

    async def __call__(self, scope, receive, send) -> None:
        if (self.decide_asgi is not None and scope["type"] == "http" and scope["path"] == "/v1/decisions"
                and scope["method"] == "POST"):
            await self.decide_asgi(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(*, keys: KeyRing, limiter: RateLimiter, engine: DecisionEngine, decision_log, store_ping,
               max_body_bytes: int, max_batch: int, metrics: ApiMetrics | None = None,
               on_shutdown=lambda: None) -> DecisionApp:
    """The app over already built parts (``fraud_platform.api.server`` builds them from settings)."""
    metrics = metrics or ApiMetrics()
    validator = TransactionValidator()
    batcher = Batcher(engine)
    batcher.batch_sizes = metrics.batch_size.observe

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        batcher.stop()
        on_shutdown()

    app = DecisionApp(
        title="fraud_platform decision API", version="1",
        description="One card transaction decided synchronously (approve/review/block) with the champion model's "
                    "score and its top reasons, from the same validation, features and thresholds as the streaming scorer.",
        lifespan=lifespan,
    )
    api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
    bearer = HTTPBearer(auto_error=False)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> Response:
        return _json({"error": error.detail.model_dump()}, error.status, error.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> Response:
        status, body, _ = unexpected_error(request.url.path, error)
        return Response(body, status_code=status, media_type="application/json")

    def authorise(scope: str, x_api_key: str | None, credentials: HTTPAuthorizationCredentials | None) -> str:
        """The key's name if it may use ``scope``; 401/403 otherwise."""
        return authorise_key(scope, x_api_key or (credentials.credentials if credentials else None))

    def authorise_key(scope: str, presented: str | None) -> str:
        try:
            return keys.authenticate(presented, scope).name
        except AuthError as error:
            metrics.auth_failures.labels(str(error.status)).inc()
            raise ApiError(error.status, "unauthorized" if error.status == 401 else "forbidden", str(error),
                           headers={"WWW-Authenticate": "Bearer"} if error.status == 401 else None) from None

    def limited(key: str, wait: float) -> ApiError:
        metrics.rate_limited.labels(key).inc()
        return ApiError(429, "rate_limited", f"rate limit of {limiter.rate:g} requests/s for key {key!r} exceeded",
                        headers={"Retry-After": str(max(1, int(wait + 0.999)))})

    async def throttle(key: str, cost: int = 1) -> None:
        """429 with Retry-After when the key's bucket is empty; a batch costs one token per event.
        Decisions are checked in their feature read's round trip instead (:class:`DecisionEngine`);
        this is for the requests that never get there."""
        wait = await limiter.acquire_async(key, min(cost, limiter.burst))
        if wait > 0:
            raise limited(key, wait)

    async def body_of(declared: str | None, receive) -> bytes:
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            raise ApiError(413, "body_too_large", f"request body of {declared} bytes exceeds {max_body_bytes}")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > max_body_bytes:
                raise ApiError(413, "body_too_large", f"request body exceeds {max_body_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def rejected(rejection: Rejection) -> ApiError:
        metrics.rejections.labels(rejection.rule).inc()
        return ApiError(422, rejection.rule, rejection.message, rejection.field, rejection.value)

    async def decided(events, started: float, key: str, cost: int = 1) -> list[dict]:
        try:
            return await batcher.submit(events, started, key, cost)
        except RateLimited as error:
            raise limited(key, error.wait) from None
        except NoChampionError as error:
            raise ApiError(503, "model_unavailable", f"no model loaded: {error}", headers={"Retry-After": "5"}) from None
        except StoreUnavailable as error:
            raise ApiError(503, "store_unavailable", str(error), headers={"Retry-After": "1"}) from None

    def unexpected_error(path: str, error: Exception) -> tuple[int, bytes, None]:
        # A defect, not bad input: logged in one line (masked) and answered in the usual error shape.
        # The path is client input too (/v1/transactions/{id}): masked with the rest.
        log.error("%s", mask_pans(f"unexpected error on {path[:200]}: {type(error).__name__}: {error}")[:700])
        return 500, orjson.dumps({"error": {"rule": "internal_error", "field": None, "value": None,
                                            "message": "the decision could not be made; the error is logged"}}), None

    async def decide_single(scope, receive) -> tuple[int, bytes, dict[str, str] | None]:
        """POST /v1/decisions on the raw ASGI scope: (status, JSON body, extra headers)."""
        started = time.perf_counter()
        try:
            with metrics.track("/v1/decisions") as outcome:
                headers = decide_headers(scope)
                key = authorise_key("decide", presented_key(headers))
                parsed = parse(await body_of(headers.get("content-length"), receive), validator)
                if isinstance(parsed, Rejection):
                    await throttle(key)  # a refused request counts against the key too
                    raise rejected(parsed)
                (decision,) = await decided([parsed], started, key)
                metrics.decided([decision])
                outcome.ok()
                return 200, orjson.dumps(decision_document(decision), option=orjson.OPT_SERIALIZE_NUMPY), None
        except ApiError as error:
            return error.status, orjson.dumps({"error": error.detail.model_dump()}), error.headers
        except Exception as error:
            return unexpected_error(scope["path"], error)

    async def decide_asgi(scope, receive, send) -> None:
        status, body, extra = await decide_single(scope, receive)
        headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
        if extra:
            headers += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    app.decide_asgi = decide_asgi

    # Answered by ``decide_asgi`` ahead of FastAPI (see :class:`DecisionApp`); declared here for the
    # document (both key schemes, as the other routes declare them) and as the same handler's fallback.
    @app.post("/v1/decisions", response_model=DecisionOut, responses={422: {"model": ErrorOut}, **_ERRORS},
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _EVENT_SCHEMA}}},
                             "security": [{"APIKeyHeader": []}, {"HTTPBearer": []}]},
              summary="Decide one transaction")
    async def decide_one(request: Request) -> Response:
        status, body, extra = await decide_single(request.scope, request.receive)
        return Response(body, status_code=status, media_type="application/json", headers=extra)

    @app.post("/v1/decisions:batch", response_model=BatchOut, responses={422: {"model": ErrorOut}, **_ERRORS},
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _BATCH_SCHEMA}}}},
              summary=f"Decide up to {max_batch} transactions; each item succeeds or fails on its own")
    async def decide_batch(request: Request, x_api_key: str | None = Security(api_key_header),
                           credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> Response:
        started = time.perf_counter()
        with metrics.track("/v1/decisions:batch") as outcome:
            key = authorise("decide", x_api_key, credentials)
            body = await body_of(request.headers.get("content-length"), request.receive)
            try:
                document = orjson.loads(body)
            except orjson.JSONDecodeError as error:
                raise rejected(masked(Rejection("malformed_json", None, None, f"not a JSON document: {error}"))) from None
            items = document.get("transactions") if isinstance(document, dict) else None
            if not isinstance(items, list) or not items:
                raise rejected(Rejection("invalid_value", "transactions", None, "expected {\"transactions\": [event, ...]} with at least one event"))
            if len(items) > max_batch:
                raise rejected(Rejection("batch_too_large", "transactions", str(len(items)), f"{len(items)} events exceed the batch limit of {max_batch}"))
            parsed = [parse(orjson.dumps(item), validator) for item in items]
            accepted = [p for p in parsed if not isinstance(p, Rejection)]
            if not accepted:
                await throttle(key, cost=len(items))
            decisions = iter(await decided(accepted, started, key, cost=len(items)) if accepted else ())
            results = []
            for index, p in enumerate(parsed):
                if isinstance(p, Rejection):
                    metrics.rejections.labels(p.rule).inc()
                    results.append({"index": index, "status": 422, "error": ErrorDetail(**p.__dict__).model_dump()})
                else:
                    d = next(decisions)
                    metrics.decided([d])
                    results.append({"index": index, "status": 200, "decision": decision_document(d)})
            outcome.ok()
            return _json({"results": results, "latency_ms": round((time.perf_counter() - started) * 1000, 3)})

    @app.get("/v1/transactions/{transaction_id}", response_model=StoredDecisionOut, responses={404: {"model": ErrorOut}, **_ERRORS},
             summary="The stored decision of a transaction (API or stream) and its reasons")
    async def transaction(transaction_id: str, x_api_key: str | None = Security(api_key_header),
                          credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> Response:
        with metrics.track("/v1/transactions") as outcome:
            await throttle(authorise("read", x_api_key, credentials))
            if looks_like_pan(transaction_id):
                raise rejected(Rejection("raw_pan", "transaction_id", mask_pans(transaction_id), "a raw card number is not a transaction id"))
            row = decision_log.get(transaction_id)
            if row is None:
                raise ApiError(404, "not_found", f"no decision stored for transaction {transaction_id!r}", "transaction_id", transaction_id)
            outcome.ok()
            return _json({**decision_document(row), "source": row["source"], "event_time": row["event_time"],
                          "amount_eur": row["amount_eur"]})

    @app.get("/healthz", summary="The process is up")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", summary="Ready to decide: a model is loaded and the online store answers",
             responses={503: {"description": "not ready; the body says which part is missing"}})
    async def readyz() -> Response:
        checks: dict[str, Any] = {}
        try:
            champion = engine.champion.current()
            checks["model"] = {"ok": True, "name": champion.name, "version": champion.version}
        except NoChampionError as error:
            checks["model"] = {"ok": False, "error": str(error)}
        try:
            pinged = store_ping()
            if inspect.isawaitable(pinged):
                await pinged
            checks["store"] = {"ok": True}
        except Exception as error:
            checks["store"] = {"ok": False, "error": f"{type(error).__name__}: {error}"[:300]}
        ready = all(c["ok"] for c in checks.values())
        return _json({"ready": ready, "checks": checks}, 200 if ready else 503)

    @app.get("/metrics", summary="Prometheus metrics of this worker process")
    async def prometheus() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    return app
