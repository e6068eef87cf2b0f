"""Pseudonymous entity keys. Processed data, features and the streaming scorer all key customers
and cards by these keyed hashes (HMAC-SHA256 under ``FRAUD_TOKENISATION_KEY``, see
``fraud_platform.security``), so raw identifiers never leave the raw zone and the pseudonyms cannot
be recomputed from a list of identifiers without the key."""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

_NAMESPACE = b"fraud-platform/entity/v1"


@lru_cache(maxsize=4)
def _entity_subkey(key: str) -> bytes:
    """A key for entity pseudonyms only, derived from the platform key (domain separation from card tokens)."""
    return hmac.digest(key.encode(), _NAMESPACE, "sha256")


@lru_cache(maxsize=1)
def _platform_subkey() -> bytes:
    """The platform key is read once per process (it is fixed for a deployment's lifetime)."""
    from fraud_platform.security import tokenisation_key

    return _entity_subkey(tokenisation_key())


def entity_key(value: str, key: str | None = None) -> str:
    """Stable 16-hex-char pseudonym of an identifier (same input and key -> same pseudonym, everywhere)."""
    subkey = _platform_subkey() if key is None else _entity_subkey(key)
    return hmac.digest(subkey, value.encode(), "sha256")[:8].hex()


def tokenise_pan(pan: str, key: str) -> str:
    """Card token for a PAN: keyed HMAC, so the token cannot be reversed without the key."""
    return "tok_" + hmac.new(key.encode(), pan.encode(), hashlib.sha256).hexdigest()[:32]
