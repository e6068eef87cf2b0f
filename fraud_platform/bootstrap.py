"""Fresh-machine entry point; standard library only, so it runs before anything is installed.

    python3.11 -m fraud_platform.bootstrap run    # venv + install + the main job end-to-end
    python3.11 -m fraud_platform.bootstrap test   # venv + install + the whole test suite
    python3.11 -m fraud_platform.bootstrap browser  # only Debian's Chromium (console browser tests)

The venv lives in ./.venv and is (re)installed from pyproject.toml pinned by constraints.txt
whenever either file changes, so every machine gets the same versions.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"
STAMP = VENV / ".fraud-platform-install"


def _bin(name: str) -> str:
    return str(VENV / "bin" / name)


def _check_prerequisites() -> None:
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"error: Python 3.11 is required, this is {sys.version.split()[0]} (run it with python3.11)")
    if shutil.which("java") is None:
        sys.exit("error: Java 17 is required for Spark (no `java` on PATH)")


def _install_fingerprint() -> str:
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "constraints.txt"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def ensure_venv() -> None:
    """Create ./.venv and install the project with its test extras, pinned by constraints.txt."""
    _check_prerequisites()
    if not (VENV / "bin" / "python").exists():
        print("creating .venv", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    fingerprint = _install_fingerprint()
    if STAMP.exists() and STAMP.read_text() == fingerprint:
        return
    print("installing fraud_platform and its pinned dependencies into .venv", flush=True)
    subprocess.run([_bin("python"), "-m", "pip", "install", "-q", "--upgrade", "pip", "setuptools", "wheel"], check=True, cwd=ROOT)
    subprocess.run(
        [_bin("python"), "-m", "pip", "install", "-q", "-c", "constraints.txt", "-e", ".[test]"], check=True, cwd=ROOT
    )
    STAMP.write_text(fingerprint)


CHROMIUM = Path("/usr/bin/chromium")


def ensure_debian_package(binary: Path, package: str, purpose: str) -> bool:
    """``binary`` from Debian's ``package``, installed with apt when missing and running as root
    (tools the project cannot get from PyPI); otherwise a note saying how. True when it is there."""
    if binary.exists():
        return True
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(f"note: {binary} is missing; run `apt-get install -y {package}` as root for {purpose}", flush=True)
        return False
    print(f"installing Debian's {package} for {purpose}", flush=True)
    apt_env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update"], check=True, env=apt_env)
    subprocess.run(["apt-get", "install", "-y", package], check=True, env=apt_env)
    return binary.exists()


def ensure_chromium() -> bool:
    """Debian's Chromium for the console's Playwright tests (Playwright's own browser download is
    not reachable from a loopback-only machine)."""
    return ensure_debian_package(CHROMIUM, "chromium", "the console browser tests")


def _parallel_test_files(pytest_args: list[str]) -> list[str]:
    """Most of the suite's wall time is spent waiting (JVM and server start-ups, Spark micro-batches,
    a daemon's ticks), so test files run in parallel, one pytest-xdist worker per core (at most 4:
    each worker starts its own Spark, broker and Redis). A file stays on one worker, keeping its
    module fixtures; ``-n``/``-p no:xdist`` given by the caller wins."""
    if any(arg.startswith(("-n", "--numprocesses", "--dist")) or arg == "no:xdist" for arg in pytest_args):
        return []
    workers = min(len(os.sched_getaffinity(0)), 4)
    return ["--numprocesses", str(workers), "--dist", "loadfile"] if workers > 1 else []


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("run", "test", "install", "browser"):
        print(__doc__)
        return 2
    if argv[0] == "browser":
        return 0 if ensure_chromium() else 1
    if argv[0] == "test":
        ensure_chromium()
    ensure_venv()
    env = dict(os.environ, PYSPARK_PYTHON=_bin("python"), PYSPARK_DRIVER_PYTHON=_bin("python"))
    if argv[0] == "install":
        return 0
    if argv[0] == "run":
        command = [_bin("fraud-platform"), "run-local", *argv[1:]]
    else:
        command = [_bin("python"), "-m", "pytest", *_parallel_test_files(argv[1:]), *argv[1:]]
    return subprocess.run(command, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
