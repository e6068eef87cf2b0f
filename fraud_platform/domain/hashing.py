"""Pseudonymous entity keys. Processed data, features and the streaming scorer all key customers
and cards by these hashes, so raw identifiers never leave the raw zone."""

from __future__ import annotations

import hashlib
import hmac

_NAMESPACE = b"fraud-platform/entity/v1"


def entity_key(value: str) -> str:
    """Stable 16-hex-char pseudonym of an identifier (same input -> same key, everywhere)."""
    return hashlib.blake2b(value.encode(), digest_size=8, key=_NAMESPACE).hexdigest()


def tokenise_pan(pan: str, key: str) -> str:
    """Card token for a PAN: keyed HMAC, so the token cannot be reversed without the key."""
    return "tok_" + hmac.new(key.encode(), pan.encode(), hashlib.sha256).hexdigest()[:32]
