"""A real Spark standalone cluster (one master, one worker) from the pyspark distribution, on free
loopback ports: what the streaming scorer's cluster test and the scale-out benchmark run against.

``spark-class org.apache.spark.deploy.master.Master`` / ``...worker.Worker`` are the same daemons
``docker-compose.yml`` runs as ``spark-master`` / ``spark-worker``; here they are child processes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from fraud_platform.infra.broker import free_port, start_service


class SparkClusterError(RuntimeError):
    """The master or the worker did not come up; the message names the log to read."""


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


class StandaloneCluster:
    """``with StandaloneCluster(workdir, cores=2) as master_url: ...`` — stopped (whole process groups) on exit."""

    def __init__(self, workdir: Path, cores: int = 2, memory: str = "2g", python_path: str | None = None) -> None:
        self.workdir = Path(workdir)
        self.cores = cores
        self.memory = memory
        self.python_path = python_path
        self.port = free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        self._processes: list[subprocess.Popen] = []

    def _env(self) -> dict[str, str]:
        env = {**os.environ, "SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": "127.0.0.1",
               "SPARK_WORKER_DIR": str(self.workdir / "work"), "SPARK_LOG_DIR": str(self.workdir / "logs"),
               "PYSPARK_PYTHON": sys.executable}
        if self.python_path:  # executors import the scorer's code from here
            env["PYTHONPATH"] = os.pathsep.join(p for p in (self.python_path, env.get("PYTHONPATH", "")) if p)
        return env

    def _daemon(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "wb")
        process = start_service([str(spark_home() / "bin" / "spark-class"), *args], env=self._env(), stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        self._processes.append(process)
        return process

    def start(self, timeout: float = 120.0) -> str:
        self.workdir.mkdir(parents=True, exist_ok=True)
        master = self._daemon("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                              "--port", str(self.port), "--webui-port", str(free_port()))
        self._wait(master, "master", lambda: _listening(self.port), timeout)
        worker = self._daemon("worker", "org.apache.spark.deploy.worker.Worker", self.url, "--host", "127.0.0.1",
                              "--cores", str(self.cores), "--memory", self.memory, "--webui-port", str(free_port()))
        self._wait(worker, "worker", lambda: "Successfully registered with master" in (self.workdir / "worker.log").read_text(errors="replace"), timeout)
        return self.url

    def _wait(self, process: subprocess.Popen, name: str, ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SparkClusterError(f"Spark {name} did not start; see {self.workdir / (name + '.log')}")
            time.sleep(0.3)

    def stop(self) -> None:
        for process in reversed(self._processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        self._processes.clear()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0
