"""Process-wide data protection set up once at start (CLI, Dagster definitions, streaming scorer).

* ``FRAUD_TOKENISATION_KEY`` keys every pseudonym (card tokens, customer/card entity keys). No key is
  written in the source: outside ``FRAUD_PLATFORM_ENV=local`` (the embedded default) the platform
  refuses to start without it; locally a random key is generated once into
  ``$FRAUD_PLATFORM_HOME/secrets/tokenisation.key`` (0600) and a warning says so, once.
* Files the platform writes under ``FRAUD_PLATFORM_HOME`` are private to its user: the process umask
  is 077 (files 0600, folders 0700), and Spark's Hadoop file system, which sets permissions itself
  from ``fs.permissions.umask-mode`` instead of the process umask, gets the same mask
  (``fraud_platform.infra.spark``).
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
from functools import lru_cache
from pathlib import Path

from fraud_platform.settings import platform_env, platform_home, tokenisation_key_from_env

log = logging.getLogger(__name__)

KEY_ENV = "FRAUD_TOKENISATION_KEY"
ENV_ENV = "FRAUD_PLATFORM_ENV"
PRIVATE_UMASK = 0o077
HADOOP_UMASK_MODE = "077"


class MissingSecretError(RuntimeError):
    """A secret the platform needs outside local development is not set."""


def tokenisation_key() -> str:
    """The pseudonymisation key: the env var, else (local only) the generated per-home key."""
    return _resolve_key(tokenisation_key_from_env(), platform_env(), str(platform_home()))


@lru_cache(maxsize=8)
def _resolve_key(from_env: str | None, env: str, home: str) -> str:
    if from_env:
        return from_env
    if env != "local":
        raise MissingSecretError(
            f"{KEY_ENV} is not set and {ENV_ENV}={env!r}: refusing to start without the tokenisation key "
            f"(set {KEY_ENV}, or {ENV_ENV}=local for a development key)"
        )
    path = Path(home).resolve() / "secrets" / "tokenisation.key"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        # Written whole to a temp file, then linked into place: concurrent first starts (e.g. Spark
        # workers) agree on one key and nobody reads a half-written file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".key-")
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    key = path.read_text().strip()
    log.warning("%s is not set: using the local development key in %s (never use it outside %s=local)", KEY_ENV, path, ENV_ENV)
    return key


def executor_env_conf() -> dict[str, str]:
    """Spark conf giving executors the driver's key: pseudonyms computed in UDFs on a cluster must
    use the same key (a worker without it would otherwise refuse, or locally invent its own).
    Spark redacts conf keys matching ``token`` in its UI and logs."""
    return {f"spark.executorEnv.{KEY_ENV}": tokenisation_key(), f"spark.executorEnv.{ENV_ENV}": platform_env()}


def secure_process_start() -> None:
    """Call once at process start: private file modes, and fail fast on a missing key."""
    os.umask(PRIVATE_UMASK)
    tokenisation_key()
