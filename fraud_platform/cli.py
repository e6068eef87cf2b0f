"""`fraud-platform`: operational commands for the embedded platform.

    fraud-platform broker start|stop|status   manage the embedded Kafka-protocol broker
    fraud-platform online-store start|stop|status   manage the embedded Redis (online feature store)
    fraud-platform topics                     create the platform's topics (idempotent)
    fraud-platform simulate ...               stream simulated transactions + delayed labels to Kafka
    fraud-platform land ...                   land topics into the lake now (what the ingestion assets run)
    fraud-platform import PATH ...            bring your own CSV/Parquet history through the same validation
    fraud-platform run-local ...              the main job: broker → simulate → materialise every asset
    fraud-platform serve [--host --port --workers]   the decision API (docs/api.md)
    fraud-platform api-key NAME               make an API key for the decision API
    fraud-platform launch -- --assets ...     `dg launch` on the code location with DAGSTER_HOME prepared
    fraud-platform dagster-home               create DAGSTER_HOME + dagster.yaml if missing; print its path
    fraud-platform backtest ...               train + evaluate on explicit date windows (rolling over weeks)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from fraud_platform.settings import PlatformSettings, platform_home

log = logging.getLogger("fraud_platform")
REPO_ROOT = Path(__file__).resolve().parents[1]


def _fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def _rate(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:/s)?\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"--rate expects messages per second like '2000/s', got {text!r}")
    return float(match.group(1))


def _pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    pairs = {}
    for item in values or []:
        if "=" not in item:
            _fail(f"{flag} expects NAME=VALUE, got {item!r}")
        name, value = item.split("=", 1)
        pairs[name.strip()] = value.strip()
    return pairs


# -- broker ---------------------------------------------------------------------------------------
def _manage(server, action: str, name: str, start, error_type: type[Exception]) -> None:
    """start | stop | status of an embedded server (broker, online store); status exits 1 when down."""
    try:
        if action == "start":
            start()
        elif action == "stop":
            print(f"{name} stopped" if server.stop() else f"{name} was not running")
        else:
            status = server.status()
            print(json.dumps(status, indent=1))
            if not status["running"]:
                raise SystemExit(1)
    except error_type as error:
        _fail(str(error))


def cmd_broker(args: argparse.Namespace) -> None:
    from fraud_platform.infra.broker import BrokerError, EmbeddedBroker

    broker = EmbeddedBroker.default()

    def start() -> None:
        state = broker.start(port=args.port, durable=args.durable, storage=args.storage)
        print(f"broker running at {state.address} (pid {state.pid}, storage {state.storage}); log: {state.log_file}")
        if args.topics:
            _create_topics()

    _manage(broker, args.action, "broker", start, BrokerError)


# -- online store ---------------------------------------------------------------------------------
def cmd_online_store(args: argparse.Namespace) -> None:
    from fraud_platform.infra.online_store_server import EmbeddedOnlineStore, OnlineStoreServerError

    server = EmbeddedOnlineStore.default()

    def start() -> None:
        state = server.start(port=args.port)
        print(f"online store running at {state.url} (pid {state.pid}, data {state.data_dir}); log: {state.log_file}")

    _manage(server, args.action, "online store", start, OnlineStoreServerError)


def _create_topics() -> dict[str, int]:
    from fraud_platform.infra.kafka import ensure_topics

    created = ensure_topics(PlatformSettings.from_env().kafka)
    for topic, partitions in created.items():
        print(f"topic {topic}: {partitions} partition(s)")
    return created


def cmd_topics(args: argparse.Namespace) -> None:
    _kafka_or_fail()
    _create_topics()


def _kafka_or_fail():
    settings = PlatformSettings.from_env()
    try:
        settings.kafka.resolved_bootstrap()
    except RuntimeError as error:
        _fail(str(error))
    return settings


# -- simulate -------------------------------------------------------------------------------------
def cmd_simulate(args: argparse.Namespace) -> None:
    from fraud_platform.domain.simulator import SimulationConfig, TransactionSimulator
    from fraud_platform.infra.publish import publish_simulation

    settings = _kafka_or_fail()
    if args.start + timedelta(days=args.days) > datetime.now(timezone.utc).date() + timedelta(days=1):
        print("warning: the window reaches into the future; events more than 1 h ahead are dead-lettered as future_timestamp", file=sys.stderr)
    config = SimulationConfig.from_settings(
        settings, args.start, args.days, n_customers=args.customers, n_terminals=args.terminals, seed=args.seed,
        fraud_rate=args.fraud_rate, label_delay_days=args.label_delay_days,
    )
    report = publish_simulation(
        settings.kafka, TransactionSimulator(config), rate=None if args.as_fast_as_possible else args.rate,
        inject_invalid_rate=args.inject_invalid, seed=args.seed,
    )
    print(
        f"produced {report.total} messages in {report.seconds:.1f}s ({report.rate:,.0f} msg/s): {report.produced}; "
        f"expected valid transactions {report.expected_valid_transactions}; injected invalid {report.injected_invalid}"
    )


# -- land -----------------------------------------------------------------------------------------
LAND_TARGETS = ("transactions", "labels", "quarantine-transactions", "quarantine-labels")


def land(targets: list[str], settings: PlatformSettings | None = None) -> dict[str, object]:
    """Run the landing engine for the given datasets (same code the ingestion assets run)."""
    from fraud_platform.infra.landing import LandingEngine
    from fraud_platform.infra.landing_specs import labels_spec, quarantine_spec, transactions_spec
    from fraud_platform.infra.lake import lake_store_from_settings

    settings = settings or PlatformSettings.from_env()
    store = lake_store_from_settings(settings.lake)
    topics = settings.kafka.topics
    specs = {
        "transactions": transactions_spec(topics),
        "labels": labels_spec(topics),
        "quarantine-transactions": quarantine_spec(topics, "transactions"),
        "quarantine-labels": quarantine_spec(topics, "labels"),
    }
    results = {}
    for target in targets:
        result = LandingEngine(store, settings.kafka, specs[target]).land()
        results[target] = result
        print(
            f"{target}: consumed {result.consumed} = {result.valid} landed + {result.dead_lettered} dead-lettered "
            f"{result.rejections_by_rule or ''}"
        )
    return results


def cmd_land(args: argparse.Namespace) -> None:
    _kafka_or_fail()
    land(list(LAND_TARGETS) if args.dataset == "all" else [args.dataset])


# -- import ---------------------------------------------------------------------------------------
def cmd_import(args: argparse.Namespace) -> None:
    from fraud_platform.infra.history_import import parse_label_type_rule, prepare_import, produce_import, validate_import
    from fraud_platform.settings import ImportSettings

    settings = PlatformSettings.from_env()
    if not args.dry_run:
        _kafka_or_fail()
    if not args.path.exists():
        _fail(f"{args.path} does not exist")
    max_share = args.max_rejected_share if args.max_rejected_share is not None else ImportSettings.from_env().max_rejected_share
    try:
        prepared = prepare_import(
            args.path, args.kind, settings.kafka.topics, column_map=_pairs(args.map, "--map"),
            constants=_pairs(args.set, "--set"), assume_utc=not args.no_assume_utc,
            label_delay_days=args.label_delay_days, tokenisation_key=settings.tokenisation_key.get_secret_value(),
            label_type_rule=parse_label_type_rule(args.label_type_rule),
        )
    except ValueError as error:
        _fail(str(error))
    summary = validate_import(prepared, settings.kafka.topics)
    for warning in summary.warnings():
        print(warning, file=sys.stderr)
    print("\n".join(summary.lines()))
    if summary.rejected_share > max_share:
        _fail(f"{summary.rejected_share:.1%} of rows would be dead-lettered, above the allowed {max_share:.1%} "
              f"(--max-rejected-share / FRAUD_IMPORT_MAX_REJECTED_SHARE); nothing was produced. "
              "Fix the column mapping (--map SRC=FIELD, --set FIELD=VALUE) or allow more rejections.", 3)
    if args.dry_run:
        print("dry run: nothing produced")
        return
    report = produce_import(settings.kafka, prepared)
    print(f"produced {report.produced} from {args.path}")
    if not args.no_land:
        targets = ["transactions", "labels", "quarantine-transactions", "quarantine-labels"]
        land(targets if args.kind == "transactions" else ["labels", "quarantine-labels"], settings)


# -- run-local ------------------------------------------------------------------------------------
def prepare_dagster_home() -> Path:
    """DAGSTER_HOME under the platform home, with the local instance config (pools, SQLite)."""
    from fraud_platform.settings import OrchestrationSettings

    home = OrchestrationSettings.from_env().dagster_home
    home.mkdir(parents=True, exist_ok=True)
    template = REPO_ROOT / "deploy" / "dagster.local.yaml"
    if template.exists() and not (home / "dagster.yaml").exists():
        shutil.copy(template, home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)  # plumbing: for Dagster in this process and the dg/dagster children
    return home


def _matured_only() -> set[str]:
    """Partitioned assets that only accept days whose label window has matured."""
    from fraud_platform.domain.catalogue import SANDBOX_TRANSACTIONS

    return {SANDBOX_TRANSACTIONS.asset_key}


def newest_matured_day(settings: PlatformSettings) -> date | None:
    """The newest day the sandbox accepts now: the catalogue's maturity rule against the same
    reference (labels watermark by default) the sandbox asset and the lake sensor use."""
    from fraud_platform.domain.catalogue import last_matured_day
    from fraud_platform.infra.lake import lake_store_from_settings
    from fraud_platform.processing.maturity import MaturityPolicy

    processing = settings.lake_processing
    reference = MaturityPolicy(processing.label_maturity_days, processing.maturity_reference).reference_time(
        lake_store_from_settings(settings.lake))
    return last_matured_day(processing.label_maturity_days, reference) if reference else None


# Expensive analyses run on demand (their own CLI command), not by run-local.
ON_DEMAND = {"model_backtest"}


def materialize_everything(start: date, end: date) -> None:
    """Materialise every asset of the code location the way an operator would from the CLI:
    daily-partitioned assets over [start, end] in one run (BackfillPolicy.single_run), the
    sandbox over the days whose labels have matured, then the unpartitioned assets."""
    from fraud_platform.definitions import defs

    graph = defs.resolve_asset_graph()
    partitioned, matured_only, unpartitioned = [], [], []
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if not node.is_materializable:
            continue
        name = key.to_user_string()
        if name in ON_DEMAND:
            continue
        if node.partitions_def is None:
            unpartitioned.append(name)
        else:
            (matured_only if name in _matured_only() else partitioned).append(name)

    def run(arguments: list[str]) -> None:
        completed = dg_launch(arguments)
        if completed.returncode != 0:
            _fail(f"materialisation failed (exit {completed.returncode}); see the run in the Dagster UI", completed.returncode)

    if partitioned:
        run(["--assets", ",".join(sorted(partitioned)), "--partition-range", f"{start.isoformat()}...{end.isoformat()}"])
    # After raw landed: maturity is judged against the labels watermark, as the sandbox and the lake sensor do.
    matured_end = newest_matured_day(PlatformSettings.from_env())
    if matured_only and matured_end and min(matured_end, end) >= start:
        run(["--assets", ",".join(sorted(matured_only)), "--partition-range", f"{start.isoformat()}...{min(matured_end, end).isoformat()}"])
    if unpartitioned:
        run(["--assets", ",".join(sorted(unpartitioned))])


def dg_launch(arguments: list[str]) -> subprocess.CompletedProcess:
    """`dg launch -m fraud_platform.definitions ...` (the current Dagster CLI; `dagster asset
    materialize` is superseded) against the platform's DAGSTER_HOME, created on first use."""
    prepare_dagster_home()
    os.environ.setdefault("FRAUD_PLATFORM_HOME", str(platform_home()))  # plumbing: the child resolves the same home
    command = [str(Path(sys.executable).parent / "dg"), "launch", "-m", "fraud_platform.definitions", *arguments]
    print("$ dg " + " ".join(command[1:]), flush=True)
    return subprocess.run(command, cwd=REPO_ROOT)


def cmd_launch(args: argparse.Namespace) -> None:
    completed = dg_launch(args.arguments)
    if completed.returncode != 0:
        raise SystemExit(completed.returncode)


def cmd_dagster_home(args: argparse.Namespace) -> None:
    print(prepare_dagster_home())


def cmd_backtest(args: argparse.Namespace) -> None:
    """Materialise `model_backtest` with these windows (so the run, table and plot are in the UI)."""
    config = {"test_start": args.test_start.isoformat(), "test_days": args.test_days, "windows": args.windows,
              "train_end": args.train_end.isoformat() if args.train_end else None}
    if args.train_end and args.train_end >= args.test_start:
        _fail(f"--train-end {args.train_end} must be before --test-start {args.test_start}")
    run_config = {"ops": {"model_backtest": {"config": config}}}
    if args.training_config:
        try:
            run_config["resources"] = {"ml_training": {"config": json.loads(args.training_config)}}
        except json.JSONDecodeError as error:
            _fail(f"--training-config is not JSON: {error}")
    completed = dg_launch(["--assets", "model_backtest", "--config-json", json.dumps(run_config)])
    if completed.returncode != 0:
        _fail(f"backtest failed (exit {completed.returncode}); see the run in the Dagster UI", completed.returncode)


def cmd_run_local(args: argparse.Namespace) -> None:
    from fraud_platform.infra.broker import EmbeddedBroker
    from fraud_platform.settings import OnlineStoreSettings

    home = prepare_dagster_home()
    state = EmbeddedBroker.default().start()
    print(f"broker running at {state.address}")
    if OnlineStoreSettings.from_env().url is None:
        from fraud_platform.infra.online_store_server import EmbeddedOnlineStore

        print(f"online store running at {EmbeddedOnlineStore.default().start().url}")
    _create_topics()
    end = datetime.now(timezone.utc).date() - timedelta(days=1)
    start = end - timedelta(days=args.days - 1)
    cmd_simulate(argparse.Namespace(
        start=start, days=args.days, customers=args.customers, terminals=args.terminals, seed=args.seed,
        fraud_rate=None, label_delay_days=7, rate=None, as_fast_as_possible=True, inject_invalid=args.inject_invalid,
    ))
    materialize_everything(start, end)
    decide_one_transaction()
    print(
        "\nDone. Browse lineage, runs and asset metadata with:\n"
        f"  DAGSTER_HOME={home} FRAUD_PLATFORM_HOME={platform_home()} .venv/bin/dagster dev\n"
        f"The lake is in {PlatformSettings.from_env().lake.root}; stop the broker with `.venv/bin/fraud-platform broker stop`"
        " and the online store with `.venv/bin/fraud-platform online-store stop`.\n"
        "Serve decisions with `.venv/bin/fraud-platform api-key NAME` then `.venv/bin/fraud-platform serve` (docs/api.md)."
    )


# -- decision API ----------------------------------------------------------------------------------
def decide_one_transaction(timeout: float = 180.0) -> dict:
    """The decision API joins the main job: a real server process (``python -m fraud_platform.api``,
    a throw-away key) decides one new transaction of a landed customer and terminal from the online
    store and the champion the run just published, and the decision with its reasons is printed."""
    import time
    import uuid

    import httpx

    from fraud_platform.api.auth import new_key
    from fraud_platform.domain.catalogue import RAW_TRANSACTIONS
    from fraud_platform.domain.schema import TRANSACTION_FIELDS
    from fraud_platform.infra.broker import free_port, start_service
    from fraud_platform.infra.lake import lake_store_from_settings

    lake = lake_store_from_settings(PlatformSettings.from_env().lake)
    latest = lake.partition_dates(RAW_TRANSACTIONS)[-1]
    row = lake.read_partition(RAW_TRANSACTIONS, latest).slice(0, 1).to_pylist()[0]
    now = datetime.now(timezone.utc)
    event = {name: row[name] for name in TRANSACTION_FIELDS}
    # A hex id: a digits-only timestamp id is Luhn-valid one time in ten and is refused as raw_pan.
    event.update(transaction_id=f"run-local-{uuid.uuid4().hex[:16]}", event_time=now.isoformat())
    key, entry = new_key("run-local", ("decide", "read"))
    port = free_port()
    env = dict(os.environ, FRAUD_API_KEYS=entry, FRAUD_API_HOST="127.0.0.1", FRAUD_API_PORT=str(port), FRAUD_API_WORKERS="1")
    log_path = platform_home() / "api" / "run-local.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    print(f"decision API: starting a server on {url} (log {log_path})", flush=True)
    with open(log_path, "ab") as log:
        server = start_service([sys.executable, "-m", "fraud_platform.api"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.poll() is not None:
                _fail(f"the decision API exited with {server.returncode}; see {log_path}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                _fail(f"the decision API was not ready within {timeout:.0f}s; see {log_path}")
            time.sleep(0.5)
        response = httpx.post(f"{url}/v1/decisions", json=event, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        if response.status_code != 200:
            _fail(f"the decision API answered {response.status_code}: {response.text[:500]}")
        decision = response.json()
    finally:
        server.terminate()
        server.wait(30)
    reasons = "; ".join(r["text"] for r in decision.get("reasons", []))
    print(f"decision API: {event['transaction_id']} -> {decision['decision']} (score {decision['score']:.4f}, "
          f"model {decision['model']['name']} v{decision['model']['version']}); reasons: {reasons}", flush=True)
    return decision


def cmd_serve(args: argparse.Namespace) -> None:
    from fraud_platform.api.server import serve

    serve(host=args.host, port=args.port, workers=args.workers)


def cmd_api_key(args: argparse.Namespace) -> None:
    from fraud_platform.api.auth import new_key

    key, entry = new_key(args.name, tuple(args.scope or ("decide", "read")))
    print(f"API key for {args.name} (shown once; clients send it as 'Authorization: Bearer <key>'):\n  {key}")
    print(f"Add this entry (only the hash is stored) to FRAUD_API_KEYS or FRAUD_API_KEYS_FILE:\n  {entry}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fraud-platform", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO)")
    sub = parser.add_subparsers(dest="command", required=True)

    broker = sub.add_parser("broker", help="start, stop or inspect the embedded Kafka-protocol broker (tansu)")
    broker.add_argument("action", choices=["start", "stop", "status"])
    broker.add_argument("--port", type=int, help="listen port on 127.0.0.1 (default: a free port)")
    broker.add_argument("--durable", action="store_true", help="persist messages to $FRAUD_PLATFORM_HOME/broker/data (fsync'd; acknowledged messages survive kill -9). Default: in memory, lost on restart")
    broker.add_argument("--storage", help="explicit tansu storage URL, e.g. postgres://… (default memory://tansu/)")
    broker.add_argument("--no-topics", dest="topics", action="store_false", help="do not create the platform's topics on start")
    broker.set_defaults(func=cmd_broker)

    online = sub.add_parser("online-store", help="start, stop or inspect the embedded Redis (online feature store)")
    online.add_argument("action", choices=["start", "stop", "status"])
    online.add_argument("--port", type=int, help="listen port on 127.0.0.1 (default: the previous one if free, else a free port)")
    online.set_defaults(func=cmd_online_store)

    topics = sub.add_parser("topics", help="create the platform's topics with the configured partition count")
    topics.set_defaults(func=cmd_topics)

    sim = sub.add_parser("simulate", help="stream simulated transactions (and their delayed fraud labels) to Kafka")
    sim.add_argument("--start", type=date.fromisoformat, required=True, help="first simulated day (YYYY-MM-DD)")
    sim.add_argument("--days", type=int, default=1)
    sim.add_argument("--customers", type=int, default=5000)
    sim.add_argument("--terminals", type=int, default=10000)
    sim.add_argument("--seed", type=int, default=42)
    sim.add_argument("--fraud-rate", type=float, help="target share of fraudulent transactions (default: FDH scenario intensities, ~0.9%%)")
    sim.add_argument("--label-delay-days", type=int, default=7, help="labels become known up to this many days after the transaction")
    pace = sim.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=_rate, default=None, help="produce at this rate, e.g. 2000/s")
    pace.add_argument("--as-fast-as-possible", action="store_true", help="no rate limit (the default when --rate is absent)")
    sim.add_argument("--inject-invalid", type=float, default=0.0, help="fraction of transactions turned into invalid records of every class")
    sim.set_defaults(func=cmd_simulate)

    land_p = sub.add_parser("land", help="land topics into the lake now (exactly-once; what the ingestion assets do)")
    land_p.add_argument("--dataset", choices=[*LAND_TARGETS, "all"], default="all")
    land_p.set_defaults(func=cmd_land)

    imp = sub.add_parser("import", help="import a CSV/Parquet history through the same validation and landing")
    imp.add_argument("path", type=Path)
    imp.add_argument("--kind", choices=["transactions", "labels"], default="transactions")
    imp.add_argument("--map", action="append", metavar="SRC=FIELD", help="rename a source column to an event field (repeatable); FDH names are mapped automatically")
    imp.add_argument("--set", action="append", metavar="FIELD=VALUE", help="constant for a field the source lacks, e.g. currency=EUR (repeatable)")
    imp.add_argument("--no-assume-utc", action="store_true", help="reject timestamps without an offset instead of reading them as UTC")
    imp.add_argument("--label-delay-days", type=float, default=7.0, help="for transactions files with is_fraud: when the label became known")
    imp.add_argument("--no-land", action="store_true", help="only produce to Kafka; landing happens on the next ingestion run")
    imp.add_argument("--dry-run", action="store_true", help="validate and print the summary; produce nothing (no broker needed)")
    imp.add_argument("--max-rejected-share", type=float, metavar="SHARE",
                     help="fail, producing nothing, when validation rejects more than this share of rows (default 0.05, env FRAUD_IMPORT_MAX_REJECTED_SHARE)")
    imp.add_argument("--label-type-rule", metavar="fraud=TYPE,legit=TYPE",
                     help="labels: each row's label_type from its is_fraud, e.g. fraud=chargeback,legit=confirmed_legit "
                          "(a per-row column is mapped with --map SRC=label_type)")
    imp.set_defaults(func=cmd_import)

    run = sub.add_parser("run-local", help="the main job end-to-end on the embedded defaults")
    run.add_argument("--days", type=int, default=45, help="simulated days ending yesterday (training needs train + 7-day delay + test windows of matured days)")
    run.add_argument("--customers", type=int, default=2000)
    run.add_argument("--terminals", type=int, default=4000)
    run.add_argument("--seed", type=int, default=42)
    run.add_argument("--inject-invalid", type=float, default=0.005)
    run.set_defaults(func=cmd_run_local)

    serve_p = sub.add_parser("serve", help="run the decision API (FastAPI on uvicorn); see docs/api.md")
    serve_p.add_argument("--host", help="bind address (default FRAUD_API_HOST or 127.0.0.1)")
    serve_p.add_argument("--port", type=int, help="port (default FRAUD_API_PORT or 8080; 0 = any free port)")
    serve_p.add_argument("--workers", type=int, help="worker processes (default FRAUD_API_WORKERS or 1)")
    serve_p.set_defaults(func=cmd_serve)

    key_p = sub.add_parser("api-key", help="make a decision API key: prints the key once and the hashed entry to configure")
    key_p.add_argument("name", help="who uses the key (shown in metrics and the decision log)")
    key_p.add_argument("--scope", action="append", choices=["decide", "read"], help="repeatable; default both")
    key_p.set_defaults(func=cmd_api_key)

    launch = sub.add_parser("launch", help="`dg launch -m fraud_platform.definitions ARGS` with DAGSTER_HOME created if missing")
    launch.add_argument("arguments", nargs="*", help="dg launch options, e.g. --assets a,b --partition-range A...B")
    launch.set_defaults(func=cmd_launch)

    home = sub.add_parser("dagster-home", help="create DAGSTER_HOME and its dagster.yaml if missing, print the path")
    home.set_defaults(func=cmd_dagster_home)

    backtest = sub.add_parser("backtest", help="train and evaluate on explicit windows; several test windows = rolling backtest")
    backtest.add_argument("--test-start", type=date.fromisoformat, required=True, help="first test day (YYYY-MM-DD)")
    backtest.add_argument("--test-days", type=int, default=7)
    backtest.add_argument("--train-end", type=date.fromisoformat, help="last training day (default: the label-delay gap before the test window)")
    backtest.add_argument("--windows", type=int, default=1, help="consecutive test windows (each shifts training by --test-days)")
    backtest.add_argument("--training-config", metavar="JSON", help='training settings for this run, e.g. \'{"budget_seconds": 60}\' (docs/ml.md)')
    backtest.set_defaults(func=cmd_backtest)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "launch":  # everything after `launch` goes to dg as is
        rest = argv[argv.index("launch") + 1:]
        args.arguments = rest[1:] if rest[:1] == ["--"] else rest
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    from fraud_platform.security import MissingSecretError, secure_process_start

    try:
        secure_process_start()  # private file modes; no tokenisation key outside local -> no start
    except MissingSecretError as error:
        _fail(str(error))
    args.func(args)


if __name__ == "__main__":
    main()
