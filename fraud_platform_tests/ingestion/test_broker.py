"""The embedded broker's lifecycle, as `fraud-platform broker …` uses it."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from fraud_platform.infra.broker import BrokerError, EmbeddedBroker, group_members
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
    deadline = time.monotonic() + 60
    while len(done) < partitions:
        assert time.monotonic() < deadline, f"no end of partition from {topic} after 60 s: {len(values)} read, done {done}"
        for msg in consumer.consume(1000, timeout=1):
            if msg.error():
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                done.add(msg.partition())
            else:
                values.append(msg.value())
    consumer.close()
    return values


def _produce_under_load(address: str, topic: str, producers: int, seconds: float, kill) -> list[tuple[int, int, bytes]]:
    """Several idempotent acks=all producers write flat out; ``kill()`` runs mid-load.

    Returns every (partition, offset, value) the broker acknowledged."""
    settings = KafkaSettings(bootstrap_servers=address)
    acknowledged: list[tuple[int, int, bytes]] = []

    def on_delivery(error, msg) -> None:
        if error is None:
            acknowledged.append((msg.partition(), msg.offset(), msg.value()))

    clients = [make_producer(settings, **{"linger.ms": 5, "message.timeout.ms": 5000}) for _ in range(producers)]
    stop = threading.Event()

    def write(k: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                clients[k].produce(topic, value=b"p%d-%d" % (k, i), on_delivery=on_delivery)
                i += 1
            except BufferError:
                clients[k].poll(0.05)
            if i % 200 == 0:
                clients[k].poll(0)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(producers)]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    kill()
    time.sleep(0.5)  # producers keep writing into the dead broker for a moment
    stop.set()
    for thread in threads:
        thread.join()
    for client in clients:
        client.flush(8)  # delivery reports: what was acknowledged before the kill
    return acknowledged


def _kill_host(state) -> None:
    """SIGKILL to broker and storage, as when the host dies; returns once the kernel has ended them
    (a signal is delivered asynchronously: restarting at once could find the old broker still there)."""
    os.killpg(state.process_group, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while group_members(state.process_group):
        assert time.monotonic() < deadline, f"process group {state.process_group} survived SIGKILL"
        time.sleep(0.05)


@pytest.mark.slow
def test_durable_broker_keeps_every_acknowledged_message_through_kill_9_under_load(tmp_path: Path) -> None:
    """Host-death style crash (SIGKILL to broker and storage) while 3 producers write: every
    acknowledged message is readable after the restart and offsets continue past the old ones."""
    broker = EmbeddedBroker(tmp_path / "broker")
    state = broker.start(durable=True)
    ensure_topics(KafkaSettings(bootstrap_servers=state.address), ["durable"], partitions=2)
    acknowledged = _produce_under_load(
        state.address, "durable", producers=3, seconds=2.0, kill=lambda: _kill_host(state)
    )
    assert len(acknowledged) > 1000, "the load did not get going before the kill"
    restarted = broker.start(durable=True)
    try:
        readable = set(_consume_all(restarted.address, "durable", 2))
        lost = [value for _, _, value in acknowledged if value not in readable]
        print(f"kill -9 under load: {len(acknowledged)} acknowledged, {len(readable)} readable, {len(lost)} lost")
        assert lost == []
        # The restarted broker continues each partition's offsets; it does not hand out old ones.
        last = {p: max(o for q, o, _ in acknowledged if q == p) for p in {q for q, _, _ in acknowledged}}
        producer = make_producer(KafkaSettings(bootstrap_servers=restarted.address))
        new_offsets: dict[int, int] = {}
        for partition in last:
            producer.produce("durable", value=b"after", partition=partition, on_delivery=lambda e, m: new_offsets.update({m.partition(): m.offset()}))
        assert producer.flush(15) == 0
        assert all(new_offsets[p] > last[p] for p in last), (last, new_offsets)
    finally:
        broker.stop()


@pytest.mark.slow
def test_offsets_reserved_but_never_written_before_a_crash_are_released(tmp_path: Path) -> None:
    """tansu advances a partition's watermark before writing the batch; a crash in between leaves a
    tail of offsets with no data, where consumers never reach end-of-partition. The restart trims it."""
    broker = EmbeddedBroker(tmp_path / "broker")
    state = broker.start(durable=True)
    settings = KafkaSettings(bootstrap_servers=state.address)
    ensure_topics(settings, ["gap"], partitions=1)
    producer = make_producer(settings)
    for i in range(300):
        producer.produce("gap", value=b"m%d" % i)
    assert producer.flush(30) == 0
    _kill_host(state)
    mark = next((broker.data_dir / "tansu").glob("clusters/*/topics/gap/partitions/0000000000/watermark.json"))
    watermark = json.loads(mark.read_text())
    assert watermark["high"] == 300
    mark.write_text(json.dumps({**watermark, "high": 800}))  # the crash window: reserved, not written
    restarted = broker.start(durable=True)
    try:
        assert len(_consume_all(restarted.address, "gap", 1)) == 300  # reaches end-of-partition
        offsets = []
        producer = make_producer(KafkaSettings(bootstrap_servers=restarted.address))
        producer.produce("gap", value=b"next", on_delivery=lambda e, m: offsets.append(m.offset()))
        assert producer.flush(15) == 0 and offsets == [300]
        assert "released offsets reserved but never written" in broker.log_file.read_text()
    finally:
        broker.stop()


def _leftovers(tmp_path: Path, addresses: list[str]) -> list[str]:
    """Command lines of live processes that belong to a broker started under ``tmp_path``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            zombie = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            continue
        if not zombie and (str(tmp_path) in cmdline or any(a in cmdline for a in addresses)):
            found.append(cmdline)
    return found


@pytest.mark.slow
def test_stop_and_start_never_leave_processes_behind(tmp_path: Path) -> None:
    """kill -9 of the broker alone, a crashed start and stop: no broker or storage process survives."""
    broker = EmbeddedBroker(tmp_path / "broker")
    addresses = []
    first = broker.start(durable=True)
    addresses.append(first.address)
    assert len(group_members(first.process_group)) == 2  # tansu + its storage server
    os.kill(first.pid, signal.SIGKILL)  # the broker dies, its storage server would linger
    os.waitpid(first.pid, 0)
    second = broker.start(durable=True)
    addresses.append(second.address)
    assert group_members(first.process_group) == []
    assert len(_leftovers(tmp_path, addresses)) == 2
    broker.stop()
    # A start that crashes (tansu rejects the storage URL) takes its storage server down with it.
    with pytest.raises(BrokerError, match="exited with code"):
        broker.start(durable=True, storage="sqlite://nowhere")
    assert _leftovers(tmp_path, addresses) == []
    # A start killed half-way (state recorded, broker dead) is reaped by the next stop.
    third = broker.start(durable=True)
    addresses.append(third.address)
    os.kill(third.pid, signal.SIGKILL)
    os.waitpid(third.pid, 0)
    assert broker.stop() is False  # the broker was not running ...
    assert _leftovers(tmp_path, addresses) == []  # ... and its storage server is gone too
    assert not broker.state_file.exists()


def _ignores_sigterm(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    raise AssertionError(f"no SigIgn line for pid {pid}")


def test_services_honour_sigterm_when_the_starting_process_ignores_it(tmp_path: Path) -> None:
    """Dagster leaves SIGTERM ignored in a process whose SIGINT is ignored (it maps one onto the
    other), and an ignored signal survives exec: the broker and its storage server started from
    such a process must still stop on SIGTERM, not only on the SIGKILL fallback after 10-20 s."""
    broker = EmbeddedBroker(tmp_path / "broker")
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        state = broker.start(durable=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
    try:
        members = group_members(state.process_group)
        assert len(members) == 2  # tansu + its storage server
        assert [pid for pid in members if _ignores_sigterm(pid)] == []
        os.killpg(state.process_group, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while group_members(state.process_group) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert group_members(state.process_group) == []
    finally:
        broker.stop()


def test_topics_are_created_with_the_configured_min_insync_replicas(broker: str) -> None:
    """ensure_topics passes replication factor and min.insync.replicas from settings (the embedded
    broker keeps topic configs; a real cluster also enforces them)."""
    import uuid

    from confluent_kafka.admin import ConfigResource

    from fraud_platform.infra.kafka import make_admin
    from fraud_platform.settings import TopicNames

    settings = KafkaSettings(bootstrap_servers=broker, topics=TopicNames(replication_factor=2, min_insync_replicas=2))
    topic = f"isr-{uuid.uuid4().hex[:8]}"
    ensure_topics(settings, [topic], partitions=1)
    admin = make_admin(settings)
    (future,) = admin.describe_configs([ConfigResource("topic", topic)]).values()
    assert future.result(10)["min.insync.replicas"].value == "2"


def test_min_insync_replicas_above_replication_factor_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from fraud_platform.settings import TopicNames

    assert (TopicNames().replication_factor, TopicNames().min_insync_replicas) == (1, 1)  # embedded default
    monkeypatch.setenv("FRAUD_TOPIC_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("FRAUD_TOPIC_MIN_INSYNC_REPLICAS", "2")
    assert (TopicNames.from_env().replication_factor, TopicNames.from_env().min_insync_replicas) == (3, 2)
    monkeypatch.setenv("FRAUD_TOPIC_MIN_INSYNC_REPLICAS", "4")
    with pytest.raises(ValueError, match="FRAUD_TOPIC_MIN_INSYNC_REPLICAS"):
        TopicNames.from_env()


def test_producers_cannot_weaken_acks_or_idempotence() -> None:
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:1")
    for weakened in ({"acks": "1"}, {"acks": 0}, {"enable.idempotence": False}):
        with pytest.raises(ValueError, match="would weaken durability"):
            make_producer(settings, **weakened)
    make_producer(settings, **{"acks": "all", "linger.ms": 5})  # tuning is fine
