"""Dead-letter convention shared by ingestion and the streaming scorer.

A dead letter keeps the original record untouched (value and key bytes verbatim) and explains
itself in headers, following Kafka Connect's errors.deadletterqueue style:
``dlq.error.rule|field|value|message`` and ``dlq.source.topic|partition|offset``, ``dlq.failed_at``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable

from fraud_platform.domain.validation import Rejection

HEADER_PREFIX = "dlq."


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
    return [(HEADER_PREFIX + name, value.encode()) for name, value in fields.items()]


def parse_dead_letter_headers(headers: Iterable[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Headers of a dead letter as a dict without the ``dlq.`` prefix (missing ones omitted)."""
    parsed: dict[str, str] = {}
    for name, value in headers or ():
        if name.startswith(HEADER_PREFIX) and value is not None:
            parsed[name[len(HEADER_PREFIX):]] = value.decode("utf-8", "replace")
    return parsed
