"""`fraud-platform simulate` and `land` as a user runs them."""

import os
import re
import subprocess
import sys

from fraud_platform.infra.lake import LocalLakeStore

CLI = [sys.executable, "-m", "fraud_platform.cli"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=dict(os.environ), timeout=300)


def test_simulate_then_land_reconciles(kafka_settings, lake_root) -> None:
    simulated = _run("simulate", "--start", "2026-01-01", "--days", "3", "--customers", "400", "--terminals", "800",
                     "--rate", "20000/s", "--inject-invalid", "0.02", "--seed", "3")
    assert simulated.returncode == 0, simulated.stderr
    produced = re.search(r"'" + re.escape(kafka_settings.topics.transactions) + r"': (\d+)", simulated.stdout)
    expected_valid = int(re.search(r"expected valid transactions (\d+)", simulated.stdout).group(1))
    assert produced, simulated.stdout

    landed = _run("land", "--dataset", "all")
    assert landed.returncode == 0, landed.stderr
    match = re.search(r"transactions: consumed (\d+) = (\d+) landed \+ (\d+) dead-lettered", landed.stdout)
    consumed, valid, dead = map(int, match.groups())
    assert consumed == int(produced.group(1)) and valid == expected_valid and valid + dead == consumed
    assert re.search(rf"quarantine-transactions: consumed {dead} = {dead} landed", landed.stdout)

    store = LocalLakeStore(lake_root)
    assert store.partition_dates("raw", "transactions") == ["2026-01-01", "2026-01-02", "2026-01-03"]
    labels = store.partition_dates("raw", "labels")
    # Labels are partitioned by when they became known: only inside the simulated window (including
    # labels for fraud from before the window, which is how consecutive windows compose).
    assert labels and all("2026-01-01" <= day <= "2026-01-03" for day in labels)


def test_bad_rate_is_a_clear_usage_error(kafka_settings) -> None:
    result = _run("simulate", "--start", "2026-01-01", "--rate", "fast")
    assert result.returncode == 2 and "--rate expects messages per second like '2000/s'" in result.stderr


def test_help_explains_every_command() -> None:
    result = _run("--help")
    for command in ("broker", "topics", "simulate", "land", "import", "run-local"):
        assert command in result.stdout
