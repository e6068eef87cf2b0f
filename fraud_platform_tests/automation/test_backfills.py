"""Backfills the way the README documents them: from the CLI over a partition range, through the
daemon with `dagster job backfill`, and re-running one failed partition."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus

from fraud_platform.infra.publish import RateLimitedProducer

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DAYS = ["2026-01-05", "2026-01-06", "2026-01-07"]


def _tx(i: int, day: str) -> bytes:
    return json.dumps({
        "transaction_id": f"tx-backfill-{day}-{i:04d}", "event_time": f"{day}T08:00:00Z", "customer_id": "C1",
        "card_token": "tok_0123456789abcdef", "terminal_id": "T1", "amount": 10.0, "currency": "EUR",
        "merchant_category": "5411", "channel": "card_present", "country": "FR",
    }).encode()


@pytest.fixture()
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lake_root: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    # Create the SQLite schema once, before a daemon and a CLI process race to create it.
    dg.DagsterInstance.from_config(str(home)).dispose()
    return home


def _produce(settings) -> None:
    producer = RateLimitedProducer(settings)
    producer.send(settings.topics.transactions, [(None, _tx(i, day)) for day in DAYS for i in range(10)])
    producer.close()


def _dagster(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "dagster"), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)


def _materialization_counts(home: Path, key: str) -> dict[str, int]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.fetch_materializations(dg.AssetKey(key), limit=1000).records
        counts: dict[str, int] = {}
        for record in records:
            counts[record.partition_key] = counts.get(record.partition_key, 0) + 1
        return counts


@pytest.mark.slow
def test_partition_range_backfill_from_the_cli_materialises_each_partition_once(kafka_settings, dagster_home) -> None:
    _produce(kafka_settings)
    result = _dagster("asset", "materialize", "-m", "fraud_platform.definitions", "--select", "raw_transactions",
                      "--partition-range", f"{DAYS[0]}...{DAYS[-1]}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert _materialization_counts(dagster_home, "raw_transactions") == {day: 1 for day in DAYS}


@pytest.mark.slow
def test_rerunning_one_failed_partition(kafka_settings, dagster_home) -> None:
    _produce(kafka_settings)
    broken = dict(os.environ, FRAUD_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9")  # nothing listens there
    failed = _dagster("asset", "materialize", "-m", "fraud_platform.definitions", "--select", "raw_transactions", "--partition", DAYS[1], env=broken)
    assert failed.returncode != 0
    assert _materialization_counts(dagster_home, "raw_transactions") == {}
    rerun = _dagster("asset", "materialize", "-m", "fraud_platform.definitions", "--select", "raw_transactions", "--partition", DAYS[1])
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    counts = _materialization_counts(dagster_home, "raw_transactions")
    assert counts[DAYS[1]] == 1


@pytest.mark.slow
def test_job_backfill_through_the_daemon(kafka_settings, dagster_home) -> None:
    _produce(kafka_settings)
    # Sensors and schedules stay stopped so only the backfill's runs are launched.
    env = dict(os.environ, FRAUD_AUTOMATION_DEFAULT_STATUS="stopped")
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-m", "fraud_platform.definitions"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env,
    )
    try:
        submitted = _dagster("job", "backfill", "-m", "fraud_platform.definitions", "-j", "ingest_daily",
                             "--from", DAYS[0], "--to", DAYS[-1], "--noprompt", env=env)
        assert submitted.returncode == 0, submitted.stdout[-2000:] + submitted.stderr[-3000:]
        deadline = time.monotonic() + 420
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            while time.monotonic() < deadline:
                [backfill] = instance.get_backfills()
                runs = instance.get_runs()
                if backfill.status != BulkActionStatus.REQUESTED and runs and all(r.is_finished for r in runs):
                    break
                time.sleep(3)
            assert backfill.status in (BulkActionStatus.COMPLETED, BulkActionStatus.COMPLETED_SUCCESS), backfill.status
            assert len(instance.get_runs()) == len(DAYS)  # one run per partition
            assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in instance.get_runs())
        counts = _materialization_counts(dagster_home, "raw_transactions")
        assert {day for day in DAYS} <= set(counts)
    finally:
        os.killpg(daemon.pid, 15)
        daemon.wait(30)
