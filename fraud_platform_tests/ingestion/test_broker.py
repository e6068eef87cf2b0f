"""The embedded broker's lifecycle, as `fraud-platform broker …` uses it."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from fraud_platform.infra.broker import BrokerError, EmbeddedBroker
from fraud_platform.infra.kafka import ensure_topics, make_producer
from fraud_platform.settings import KafkaSettings

CLI = [sys.executable, "-m", "fraud_platform.cli"]


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, FRAUD_PLATFORM_HOME=str(home))
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=120)


def test_cli_start_status_stop(tmp_path: Path) -> None:
    started = _cli(tmp_path, "broker", "start")
    assert started.returncode == 0, started.stderr
    assert "broker running at 127.0.0.1:" in started.stdout
    assert "topic transactions.dlq: 3 partition(s)" in started.stdout
    status = _cli(tmp_path, "broker", "status")
    assert status.returncode == 0 and '"running": true' in status.stdout
    # Starting again is idempotent: same process, same address.
    again = _cli(tmp_path, "broker", "start", "--no-topics")
    assert again.stdout.split(" (pid")[0] == started.stdout.splitlines()[0].split(" (pid")[0]
    assert "broker stopped" in _cli(tmp_path, "broker", "stop").stdout
    stopped = _cli(tmp_path, "broker", "status")
    assert stopped.returncode == 1 and '"running": false' in stopped.stdout
    assert "was not running" in _cli(tmp_path, "broker", "stop").stdout


def test_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = _cli(tmp_path, "broker", "start", "--port", str(port))
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is already taken" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_binary_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUD_TANSU_BINARY", str(tmp_path / "no-such-tansu"))
    with pytest.raises(BrokerError, match="tansu broker binary not found"):
        EmbeddedBroker(tmp_path / "broker").start()


def test_stale_state_is_not_reported_as_running(tmp_path: Path) -> None:
    broker = EmbeddedBroker(tmp_path / "broker")
    state = broker.start()
    os.killpg(state.pid, signal.SIGKILL)
    os.waitpid(state.pid, 0)
    assert broker.running_address() is None
    restarted = broker.start()
    assert restarted.pid != state.pid and broker.running_address() == restarted.address
    broker.stop()


def _consume_all(address: str, topic: str, partitions: int) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": address, "group.id": "t", "enable.partition.eof": True})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    values, done = [], set()
    while len(done) < partitions:
        for msg in consumer.consume(1000, timeout=1):
            if msg.error():
                done.add(msg.partition())
            else:
                values.append(msg.value())
    consumer.close()
    return values


@pytest.mark.slow
def test_durable_storage_survives_kill_9(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Acknowledged messages survive a broker crash when the S3 (rclone) engine is used."""
    broker = EmbeddedBroker(tmp_path / "broker")
    state = broker.start(durable=True)
    settings = KafkaSettings(bootstrap_servers=state.address)
    ensure_topics(settings, ["durable"], partitions=1)
    producer = make_producer(settings)
    for i in range(500):
        producer.produce("durable", value=b"m%d" % i)
    assert producer.flush(30) == 0
    os.killpg(state.pid, signal.SIGKILL)
    os.waitpid(state.pid, 0)
    # Restart tansu on the same data folder (rclone keeps serving it).
    broker.state_file.unlink()
    os.killpg(state.rclone_pid, signal.SIGTERM)
    restarted = broker.start(durable=True)
    try:
        values = _consume_all(restarted.address, "durable", 1)
        assert sorted(values) == sorted(b"m%d" % i for i in range(500))
    finally:
        broker.stop()
