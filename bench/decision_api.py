"""Decision API benchmark: single-transaction requests at fixed rates and at the maximum rate,
against a real server process over a real online store holding >= 50k customers.

    .venv/bin/python bench/decision_api.py [--duration 20] [--rates 200,1000,max] [--customers 50000]

Everything is real and local (loopback only): the embedded Redis as the online store filled through
its own write path, a SQLite MLflow registry whose champion is the platform's training pipeline
(imblearn SMOTE + XGBoost, 200 trees) on the shared features, ``fraud-platform serve`` as a
subprocess (2 workers by default), and the load generator in ANOTHER process: Debian's ``wrk``
(installed with apt when missing and running as root; Locust, used as a library, when it cannot
be, said so and named in each row): on 2 shared cores the load generator's own CPU is taken from
the server, and wrk spends ~20 us a request where Locust spends hundreds. Fixed rates are paced by
the wrk script's ``delay()`` (one schedule for all connections), "max" is 64 unpaced connections.
Client-side latency is the time from a request's sending to its answer; server-side latency is the ``latency_ms`` each
response carries (request arrival -> decision: queueing, features, model, reasons). Server CPU per
decision (the API processes' CPU time / answered requests) is the figure that does not depend on
what else runs on the machine. The floor is the bare model on one row, measured in this process.
Targets (2 cores): p99 <= 5 ms at 1,000 req/s with features, model and reasons; >= 3,000 req/s
max; no errors. Request count and time are bounded by ``--duration`` per rate.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

MODEL_NAME = "fraud_detector_api_bench"
TOKEN = "bench-only-key-0123456789abcdef"  # the server is on loopback for the run only


# -- the load generator (its own process) -------------------------------------------------------
def run_load(url: str, rate: str, duration: float, customers: int, terminals: int, out: Path) -> None:
    """Locust users posting single transactions; writes per-request client/server latencies."""
    import gevent  # noqa: F401  (locust monkey-patches on import; this process does nothing else)
    import numpy as np
    import orjson
    from locust import FastHttpUser, constant, constant_throughput, events, task
    from locust.env import Environment

    rng = np.random.default_rng(7)
    now = datetime.now(timezone.utc) - timedelta(seconds=30)
    bodies = [orjson.dumps({
        "transaction_id": f"bench-{rate}-tx{i:09d}", "event_time": now.isoformat().replace("+00:00", "Z"),
        "customer_id": f"cust-{int(rng.integers(customers))}", "card_token": f"tok_{i % 997:032x}",
        "terminal_id": f"term-{int(rng.integers(terminals))}", "amount": round(float(rng.gamma(2.0, 40.0)) + 1, 2),
        "currency": "EUR", "merchant_category": "5411", "channel": "ecommerce", "country": "FR",
    }) for i in range(200_000)]
    per_user = 20.0
    users = 64 if rate == "max" else max(1, int(np.ceil(float(rate) / per_user)))
    counter = iter(range(len(bodies)))
    client_ms, server_ms, errors = [], [], {}
    answered = [0]  # every answered request, warm-up included (server CPU is measured over all of them)

    class Client(FastHttpUser):
        host = url
        wait_time = constant(0) if rate == "max" else constant_throughput(float(rate) / users)

        @task
        def decide(self) -> None:
            body = bodies[next(counter) % len(bodies)]
            with self.client.post("/v1/decisions", data=body, headers={"Authorization": f"Bearer {TOKEN}",
                                  "Content-Type": "application/json"}, catch_response=True) as response:
                answered[0] += 1
                if response.status_code == 200:
                    server_ms.append(orjson.loads(response.content)["latency_ms"])
                    response.success()
                else:
                    errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1
                    response.failure(f"HTTP {response.status_code}")

    def on_request(response_time, exception, **kwargs) -> None:
        client_ms.append(response_time)

    events.request.add_listener(on_request)
    env = Environment(user_classes=[Client], events=events)
    runner = env.create_local_runner()
    runner.start(users, spawn_rate=users)  # all users at once: the rate is reached immediately
    time.sleep(2.0)  # warm-up, not measured
    client_ms.clear(), server_ms.clear(), errors.clear()
    started = time.perf_counter()
    time.sleep(duration)
    measured = time.perf_counter() - started
    c, s, e = list(client_ms), list(server_ms), dict(errors)
    runner.quit()
    out.write_text(json.dumps({"rate": rate, "users": users, "seconds": measured, "client_ms": c, "server_ms": s, "errors": e,
                               "answered": answered[0]}))


# wrk's Lua (LuaJIT): bodies from a file, one per request; a fixed rate paces the requests with
# ``delay()`` on one schedule for all connections (open loop: a slow answer does not delay the
# next request while a connection is free), and every answer records its client-side time (from
# the request's sending, found by the transaction id the answer carries) and the server's
# ``latency_ms``, for the requests sent after the warm-up only.
_WRK_SCRIPT = r"""
local ffi = require("ffi")
ffi.cdef[[ typedef struct { long tv_sec; long tv_nsec; } bench_timespec; int clock_gettime(int, bench_timespec *); ]]
local clock = ffi.new("bench_timespec")
local function now_us()
  ffi.C.clock_gettime(1, clock)  -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) * 1000000 + tonumber(clock.tv_nsec) / 1000
end
local bodies, i, interval_us, next_at = {}, 0, 0, nil
local sent = {}
-- globals: done() runs in another Lua state and reads them with thread:get
client_us, server_ms, statuses, last_us, measured_from = {}, {}, {}, 0, 0
init = function(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  interval_us, measured_from = tonumber(args[2]), now_us() + tonumber(args[3]) * 1000000
  if interval_us > 0 then
    delay = function()
      local now = now_us()
      next_at = (next_at or now) + interval_us
      if next_at <= now then return 0 end
      return (next_at - now) / 1000
    end
  end
end
request = function()
  i = i % #bodies + 1
  sent[i] = now_us()
  return wrk.format("POST", "/v1/decisions", {["Authorization"] = "Bearer " .. TOKEN,
                    ["Content-Type"] = "application/json"}, bodies[i])
end
response = function(status, headers, body)
  local now = now_us()
  local n = tonumber(string.match(body, '"transaction_id":"bench%-[%w]+%-(%d+)"') or "")
  if n == nil or sent[n] == nil or sent[n] < measured_from then
    if n == nil and now >= measured_from then statuses[#statuses + 1] = status end
    return
  end
  last_us = now
  statuses[#statuses + 1] = status
  if status == 200 then
    client_us[#client_us + 1] = now - sent[n]
    server_ms[#server_ms + 1] = tonumber(string.match(body, '"latency_ms":([%d%.eE+-]+)'))
  end
end
threads = {}
setup = function(thread) threads[#threads + 1] = thread end
done = function(summary, latency, requests)
  local f = io.open(REPORT, "w")
  local e = summary.errors
  local function list(name, fmt)
    local out = {}
    for _, thread in ipairs(threads) do
      for _, v in ipairs(thread:get(name)) do out[#out + 1] = string.format(fmt, v) end
    end
    return table.concat(out, ",")
  end
  local first, last = math.huge, 0
  for _, thread in ipairs(threads) do
    first, last = math.min(first, thread:get("measured_from")), math.max(last, thread:get("last_us"))
  end
  f:write(string.format('{"requests": %d, "socket_errors": %d, "measured_from_us": %f, "last_us": %f, ',
          summary.requests, e.connect + e.read + e.write + e.timeout, first, last))
  f:write('"client_us": [' .. list("client_us", "%.1f") .. '], "server_ms": [' .. list("server_ms", "%.4f") ..
          '], "statuses": [' .. list("statuses", "%d") .. ']}')
  f:close()
end
"""


def wrk_binary() -> str | None:
    """Debian's wrk, installed with apt when missing (as root); None when it cannot be had."""
    from fraud_platform.bootstrap import ensure_debian_package

    path = shutil.which("wrk") or "/usr/bin/wrk"
    return path if ensure_debian_package(Path(path), "wrk", "the decision API benchmark's load") else None


def request_bodies(tag: str, customers: int, terminals: int, n: int) -> list[bytes]:
    """``n`` single-transaction requests over the store's customers and terminals; the id ends in
    the request's 1-based position (wrk's script finds the request of an answer by it)."""
    import numpy as np
    import orjson

    rng = np.random.default_rng(7)
    now = datetime.now(timezone.utc) - timedelta(seconds=30)
    return [orjson.dumps({
        "transaction_id": f"bench-{tag}-{i + 1:09d}", "event_time": now.isoformat().replace("+00:00", "Z"),
        "customer_id": f"cust-{int(rng.integers(customers))}", "card_token": f"tok_{i % 997:032x}",
        "terminal_id": f"term-{int(rng.integers(terminals))}", "amount": round(float(rng.gamma(2.0, 40.0)) + 1, 2),
        "currency": "EUR", "merchant_category": "5411", "channel": "ecommerce", "country": "FR",
    }) for i in range(n)]


def run_wrk(wrk: str, url: str, rate: str, duration: float, customers: int, terminals: int, out: Path) -> None:
    """wrk (C + epoll, ~20 us of client CPU a request where Locust spends a few hundred, which on
    2 shared cores is taken from the server), one thread. A fixed rate: paced by the script on
    max(8, rate/20) connections (a connection is free again long before its next turn); "max":
    64 connections, no pacing. A 2 s warm-up in the same run is not measured."""
    import tempfile

    import numpy as np

    warm_up = 2.0
    folder = Path(tempfile.mkdtemp(prefix="wrk-"))
    tag = f"{rate}x{time.time_ns() % 10**9}"
    count = int(min(200_000, (float(rate) if rate != "max" else 6000) * (duration + warm_up) * 1.5 + 1000))
    (folder / "bodies.jsonl").write_bytes(b"\n".join(request_bodies(tag, customers, terminals, count)))
    report = folder / "report.json"
    script = folder / "post.lua"
    script.write_text(f"local TOKEN, REPORT = {json.dumps(TOKEN)}, {json.dumps(str(report))}\n" + _WRK_SCRIPT)
    connections = 64 if rate == "max" else int(min(64, max(8, float(rate) / 20)))
    interval_us = 0 if rate == "max" else 1e6 / float(rate)
    subprocess.run([wrk, "-t1", f"-c{connections}", f"-d{duration + warm_up:g}s", "--timeout", "10s", "-s", str(script), url,
                    "--", str(folder / "bodies.jsonl"), f"{interval_us:.3f}", f"{warm_up:g}"],
                   check=True, capture_output=True)
    result = json.loads(report.read_text())
    statuses = np.asarray(result["statuses"], dtype=int)
    seconds = max((result["last_us"] - result["measured_from_us"]) / 1e6, 1e-9)
    errors = {str(code): int((statuses == code).sum()) for code in np.unique(statuses) if code != 200}
    if result["socket_errors"]:
        errors["socket"] = result["socket_errors"]
    out.write_text(json.dumps({"rate": rate, "users": connections, "seconds": seconds, "tool": f"wrk -c{connections}",
                               "client_ms": [v / 1000 for v in result["client_us"]], "requests": len(statuses),
                               "server_ms": result["server_ms"], "errors": errors, "answered": result["requests"]}))


# -- set-up and report (this process) -----------------------------------------------------------
def fill_store(store, customers: int, terminals: int, per_customer: int):
    """``customers * per_customer`` transactions over the last 10 days, applied through the store."""
    import numpy as np
    import pandas as pd

    from fraud_platform.domain.hashing import entity_key

    rng = np.random.default_rng(1)
    n = customers * per_customer
    start = pd.Timestamp(datetime.now(timezone.utc) - timedelta(days=10))
    cust = rng.permutation(np.arange(n) % customers)  # every customer has history
    frame = pd.DataFrame({
        "transaction_id": [f"hist-{i:09d}" for i in range(n)],
        "event_time": start + pd.to_timedelta(np.sort(rng.uniform(0, 10 * 86400 - 120, n)), unit="s"),
        "customer_key": [entity_key(f"cust-{c}") for c in cust],
        "terminal_id": [f"term-{t}" for t in rng.integers(terminals, size=n)],
        "amount_eur": np.round(rng.gamma(2.0, 40.0, n) + 1, 2),
    })
    for chunk in range(0, n, 50_000):
        store.apply_transactions(frame.iloc[chunk:chunk + 50_000])
    return frame


def register_champion(frame, tracking_uri: str, artifact_root: str) -> None:
    """The platform's training pipeline (SMOTE + XGBoost) on the shared features, aliased champion."""
    import mlflow
    import numpy as np
    from mlflow import MlflowClient

    from fraud_platform.domain.features import FEATURE_COLUMNS, compute_batch_features
    from fraud_platform.ml.registry import publish_tags
    from fraud_platform.ml.training import Candidate, TrainingConfig, build_pipeline, model_input

    sample = frame.iloc[-60_000:]
    X = model_input(compute_batch_features(sample), FEATURE_COLUMNS)
    y = ((X["amount_eur"] > 220) | (X["customer_amount_to_mean_7d"] > 3.5)).astype(int).to_numpy()
    candidate = Candidate("xgboost", "smote", {"n_estimators": 200, "max_depth": 5, "learning_rate": 0.1})
    model = build_pipeline(candidate, y, TrainingConfig(max_bin=256)).fit(X, y)
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri, tracking_uri)
    experiment = client.create_experiment("api-bench", artifact_location=artifact_root)
    with mlflow.start_run(experiment_id=experiment):
        mlflow.sklearn.log_model(model, name="model", registered_model_name=MODEL_NAME, serialization_format="cloudpickle",
                                 pip_requirements=["xgboost"])
    tags = publish_tags({}, features=FEATURE_COLUMNS, threshold=0.5, test_window="bench")
    for key, value in tags.items():
        client.set_model_version_tag(MODEL_NAME, "1", key, value)
    client.set_registered_model_alias(MODEL_NAME, "champion", "1")
    return model, X


def floor_ms(model, X) -> dict[str, float]:
    """The bare model on one row: predict_proba on a DataFrame (what callers usually do),
    inplace_predict on a numpy row, with XGBoost's own pred_contribs for reasons, and the API's
    path (score and reasons from the tabulated TreeSHAP, ``ServingModel.score_and_reasons``)."""
    import numpy as np

    from fraud_platform.ml.serving import ServingModel

    row = X.iloc[[0]]
    serving = ServingModel(model, list(X.columns))
    values = row.to_numpy(dtype="float64")

    def p50_p99(fn, n=2000) -> tuple[float, float]:
        for _ in range(50):
            fn()
        times = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1000)
        return float(np.percentile(times, 50)), float(np.percentile(times, 99))

    from fraud_platform.ml.explain import contributions, top_reasons

    def xgboost_reasons():
        return top_reasons(contributions(model, values, list(X.columns), nthread=1), values, 3)

    return {
        "predict_proba (DataFrame row)": p50_p99(lambda: model.predict_proba(row)),
        "inplace_predict (numpy row)": p50_p99(lambda: serving.predict(values)),
        "inplace_predict + top-3 reasons by XGBoost pred_contribs": p50_p99(lambda: (serving.predict(values), xgboost_reasons())),
        "API: score + top-3 reasons, tabulated TreeSHAP": p50_p99(lambda: serving.score_and_reasons(values, 3)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per rate")
    parser.add_argument("--rates", default="200,1000,max")
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--terminals", type=int, default=10_000)
    parser.add_argument("--per-customer", type=int, default=4, help="history transactions per customer")
    parser.add_argument("--workers", type=int, default=2, help="API worker processes")
    parser.add_argument("--tool", choices=("wrk", "locust"), default="wrk",
                        help="load generator (wrk: Debian's, installed with apt when missing; Locust when it cannot be)")
    parser.add_argument("--load", nargs=5, metavar=("URL", "RATE", "DURATION", "CUSTOMERS", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--wrk", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        url, rate, duration, customers, out = args.load
        if args.tool == "wrk":
            run_wrk(args.wrk, url, rate, float(duration), int(customers), args.terminals, Path(out))
        else:
            run_load(url, rate, float(duration), int(customers), args.terminals, Path(out))
        return
    args.wrk = wrk_binary() if args.tool == "wrk" else None
    if args.tool == "wrk" and args.wrk is None:
        print("load generator: Locust (wrk could not be installed); it takes a large share of the 2 cores from the server")
        args.tool = "locust"

    import httpx
    import numpy as np

    from _machine import cpu_seconds_by_process, machine_line, print_table
    from fraud_platform.api.auth import hash_key
    from fraud_platform.infra.broker import free_port

    home = Path(tempfile.mkdtemp(prefix="api-bench-"))
    os.environ["FRAUD_PLATFORM_HOME"] = str(home)
    from fraud_platform.infra.online_store import OnlineFeatureStore
    from fraud_platform.infra.online_store_server import EmbeddedOnlineStore

    print(f"machine: {machine_line()}")
    redis = EmbeddedOnlineStore(home / "online_store")
    state = redis.start()
    server = None
    try:
        store = OnlineFeatureStore.from_url(state.url, prefix="bench:")
        t = time.perf_counter()
        frame = fill_store(store, args.customers, args.terminals, args.per_customer)
        counts = store.entity_count()
        print(f"store: {len(frame):,} transactions applied in {time.perf_counter() - t:.1f} s; "
              f"{counts['customers']:,} customers, {counts['terminals']:,} terminals, used_memory {store.used_memory() / 2**20:.0f} MiB")
        t = time.perf_counter()
        tracking = f"sqlite:///{home / 'mlflow.db'}"
        model, X = register_champion(frame, tracking, (home / "artifacts").as_uri())
        print(f"champion: SMOTE + XGBoost (200 trees, depth 5) trained and registered in {time.perf_counter() - t:.1f} s")
        floors = floor_ms(model, X)

        port = free_port()
        env = {**os.environ, "FRAUD_API_PORT": str(port), "FRAUD_API_WORKERS": str(args.workers),
               "FRAUD_API_KEYS": f"bench:{hash_key(TOKEN)}", "FRAUD_API_RATE_LIMIT_PER_SECOND": "1000000",
               "FRAUD_API_RATE_LIMIT_BURST": "100000", "MLFLOW_TRACKING_URI": tracking, "MLFLOW_REGISTRY_URI": tracking,
               "FRAUD_MODEL_NAME": MODEL_NAME, "FRAUD_ONLINE_STORE_URL": state.url, "FRAUD_ONLINE_STORE_PREFIX": "bench:"}
        log = open(home / "api.log", "wb")
        server = subprocess.Popen([sys.executable, "-m", "fraud_platform.cli", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise SystemExit(f"API did not become ready; log: {home / 'api.log'}")

        def server_cpu_seconds() -> float:
            """CPU time of the server and its worker processes: the contention-free cost per request."""
            import psutil

            return sum(cpu_seconds_by_process(psutil.Process(server.pid)).values())

        rows = []
        for rate in args.rates.split(","):
            out = home / f"load-{rate}.json"
            cpu_before = server_cpu_seconds()
            load_started = os.getloadavg()[0]
            subprocess.run([sys.executable, __file__, "--terminals", str(args.terminals), "--tool", args.tool,
                            *(["--wrk", args.wrk] if args.wrk else []), "--load", url, rate, str(args.duration),
                            str(args.customers), str(out)], check=True)
            result = json.loads(out.read_text())
            cpu_ms = (server_cpu_seconds() - cpu_before) * 1000 / max(result["answered"], 1)
            client, served = np.asarray(result["client_ms"]), np.asarray(result["server_ms"])
            errors = sum(result["errors"].values())
            total = result.get("requests", len(client))
            pct = lambda a, q: float(np.percentile(a, q)) if len(a) else float("nan")  # noqa: E731
            client_pct = {int(q): v for q, v in result["client_pct"].items()} if "client_pct" in result else {
                q: pct(client, q) for q in (50, 95, 99)}
            rows.append([f"{rate} ({result.get('tool', 'locust')})", total, f"{total / result['seconds']:,.0f}",
                         f"{errors / max(total, 1):.2%}",
                         f"{client_pct[50]:.2f}", f"{client_pct[95]:.2f}", f"{client_pct[99]:.2f}",
                         f"{pct(served, 50):.2f}", f"{pct(served, 95):.2f}", f"{pct(served, 99):.2f}", f"{cpu_ms:.2f}",
                         f"{load_started:.1f}-{os.getloadavg()[0]:.1f}"])
        print_table(
            f"Decision API, {args.workers} worker(s), single-transaction requests ({args.duration:.0f} s per rate; "
            "features from the online store, model, top-3 reasons, decision log)",
            ["target rate", "requests", "achieved req/s", "errors", "client p50 ms", "client p95 ms", "client p99 ms",
             "server p50 ms", "server p95 ms", "server p99 ms", "server CPU ms/decision", "load avg (1 min)"], rows)
        print_table("Floor: the bare model on one row, in-process", ["call", "p50 ms", "p99 ms"],
                    [[name, f"{p50:.3f}", f"{p99:.3f}"] for name, (p50, p99) in floors.items()])
        metrics = httpx.get(f"{url}/metrics").text
        values = dict(line.rsplit(" ", 1) for line in metrics.splitlines() if line.startswith("fraud_api_batch_events_"))
        if "fraud_api_batch_events_count" in values:
            total, calls = float(values["fraud_api_batch_events_sum"]), float(values["fraud_api_batch_events_count"])
            print(f"\nrequest coalescing: {calls:,.0f} engine calls for {total:,.0f} decisions ({total / max(calls, 1):.2f} per call)")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        redis.stop()


if __name__ == "__main__":
    main()
