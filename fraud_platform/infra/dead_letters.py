"""Dead-letter convention shared by ingestion and the streaming scorer.

A dead letter keeps the original record (value and key bytes) and explains itself in headers,
following Kafka Connect's errors.deadletterqueue style: ``dlq.error.rule|field|value|message``,
``dlq.source.topic|partition|offset``, ``dlq.failed_at``.

Two exceptions to "verbatim", both so the dead letter can always be written:
* card numbers (PANs) are masked to first 6 / last 4 in the value, key and every header (PCI DSS:
  no full PAN at rest, and the DLQ is at rest in the broker and then in the quarantine zone);
* a record larger than ``max_bytes`` (the broker's message limit) is cut to fit, and the headers
  ``dlq.original.size`` and ``dlq.original.sha256`` describe the original. The caller may keep the
  untruncated original elsewhere (landing keeps it in the quarantine zone, see
  :func:`fraud_platform.infra.landing_specs.original_key`) unless it held a PAN.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

from fraud_platform.domain.card_data import contains_pan, mask_pans, mask_pans_bytes
from fraud_platform.domain.validation import Rejection

HEADER_PREFIX = "dlq."
# Kafka's default message.max.bytes is 1,048,588; stay below it with room for the headers.
DEFAULT_MAX_DEAD_LETTER_BYTES = 1_000_000
_HEADER_ROOM = 8_192


def masked_payload(raw: bytes | None) -> bytes | None:
    """``raw`` with every PAN masked, including PANs spelled with JSON ``\\u`` escapes."""
    if raw is None:
        return None
    masked = mask_pans_bytes(raw)
    if b"\\" in masked:
        try:
            text = json.dumps(json.loads(masked), ensure_ascii=False)
        except (ValueError, RecursionError):
            return masked
        if contains_pan(text):
            return mask_pans(text).encode("utf-8", "backslashreplace")
    return masked


@dataclass(frozen=True)
class DeadLetterMessage:
    """What to produce to the DLQ for one rejected record."""

    value: bytes | None
    key: bytes | None
    headers: list[tuple[str, bytes]]
    original_size: int
    original_sha256: str | None
    truncated: bool
    held_pan: bool


def dead_letter_message(
    rejection: Rejection, value: bytes | None, key: bytes | None, topic: str, partition: int, offset: int,
    max_bytes: int = DEFAULT_MAX_DEAD_LETTER_BYTES, failed_at: datetime | None = None,
) -> DeadLetterMessage:
    """The dead letter for ``value``: PANs masked, cut to ``max_bytes`` with size and hash if larger."""
    safe_value, safe_key = masked_payload(value), masked_payload(key)
    held_pan = safe_value is not value or safe_key is not key
    size = len(value) if value is not None else 0
    headers = dead_letter_headers(rejection, topic, partition, offset, failed_at)
    truncated = safe_value is not None and len(safe_value) > max_bytes - _HEADER_ROOM
    digest = None
    if truncated:
        digest = hashlib.sha256(value).hexdigest()
        # Masked again after the cut: it can leave the head of a long digit run that is a PAN.
        safe_value = mask_pans_bytes(safe_value[: max(0, max_bytes - _HEADER_ROOM)])
        headers += [
            (HEADER_PREFIX + "original.size", str(size).encode()),
            (HEADER_PREFIX + "original.sha256", digest.encode()),
            (HEADER_PREFIX + "truncated", b"true"),
        ]
    return DeadLetterMessage(safe_value, safe_key, headers, size, digest, truncated, held_pan)


def dead_letter_headers(
    rejection: Rejection, topic: str, partition: int, offset: int, failed_at: datetime | None = None
) -> list[tuple[str, bytes]]:
    failed_at = failed_at or datetime.now(timezone.utc)
    fields = {
        "error.rule": rejection.rule,
        "error.field": rejection.field or "",
        "error.value": rejection.value or "",
        "error.message": rejection.message,
        "source.topic": topic,
        "source.partition": str(partition),
        "source.offset": str(offset),
        "failed_at": failed_at.isoformat(),
    }
    return [(HEADER_PREFIX + name, mask_pans(value).encode("utf-8", "backslashreplace")) for name, value in fields.items()]


def parse_dead_letter_headers(headers: Iterable[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Headers of a dead letter as a dict without the ``dlq.`` prefix (missing ones omitted)."""
    parsed: dict[str, str] = {}
    for name, value in headers or ():
        if name.startswith(HEADER_PREFIX) and value is not None:
            parsed[name[len(HEADER_PREFIX):]] = value.decode("utf-8", "replace")
    return parsed
