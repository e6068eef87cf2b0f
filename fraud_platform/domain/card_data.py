"""Card numbers (PANs) in untrusted input: find them anywhere, mask them before anything is written.

PCI DSS allows at most the first six and last four digits of a PAN at rest, so every place that
writes something derived from raw input (dead-letter payloads and headers, the quarantine zone,
logs) passes it through :func:`mask_pans` / :func:`mask_pans_bytes` first, and the validator
rejects any record holding a PAN (rule ``raw_pan``) so none reaches the raw or scored zones.

What counts as a PAN: 13-19 decimal digits (any script), optionally separated by single spaces or dashes
(``4111 1111 1111 1111``, ``4111-1111-1111-1111``), Luhn-valid, and not glued to a letter or
digit on either side (``tok_3f2a...`` hex tokens and ``tx-<hex>`` ids never match). Inside a longer
run of separated digit groups every group-aligned stretch of 13-19 digits is checked, so
``4111 1111 1111 1111 0000`` is caught too. Over-matching is the safe side: a 16-digit Luhn-valid
number in any field is treated as a card number.
"""

from __future__ import annotations

import re

# A run of digits (any script's decimal digits) with single space/dash separators, not touching a
# letter or digit; the bytes twin is the ASCII fast case.
_RUN = re.compile(r"(?<![^\W_])\d(?:[ -]?\d){12,}(?![^\W_])")
_RUN_BYTES = re.compile(rb"(?<![0-9A-Za-z])[0-9](?:[ -]?[0-9]){12,}(?![0-9A-Za-z])")
_GROUP = re.compile(r"\d+")
# Cheap pre-filters (a character-class run, no look-around): most payloads have no stretch of 13+
# digits/separators at all and skip the exact scan.
_CANDIDATE = re.compile(r"\d[\d -]{11,}\d")
_CANDIDATE_BYTES = re.compile(rb"[0-9][0-9 -]{11,}[0-9]")
MIN_PAN_DIGITS, MAX_PAN_DIGITS = 13, 19


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _pan_spans(run: str, offset: int) -> list[tuple[int, int]]:
    """(start, end) of every PAN inside one separated digit run, positions relative to the text."""
    groups = [(m.start(), m.end()) for m in _GROUP.finditer(run)]
    if sum(e - s for s, e in groups) < MIN_PAN_DIGITS:
        return []
    spans = []
    if len(groups) == 1:  # one unbroken number: the whole of it, or nothing
        start, end = groups[0]
        if end - start <= MAX_PAN_DIGITS and luhn_ok(run):
            spans.append((offset, offset + len(run)))
        return spans
    for i in range(len(groups)):
        digits = ""
        for j in range(i, len(groups)):
            digits += run[groups[j][0] : groups[j][1]]
            if len(digits) > MAX_PAN_DIGITS:
                break
            if len(digits) >= MIN_PAN_DIGITS and luhn_ok(digits):
                spans.append((offset + groups[i][0], offset + groups[j][1]))
    return spans


def pan_spans(text: str) -> list[tuple[int, int]]:
    """Positions of every PAN in ``text`` (possibly overlapping)."""
    spans: list[tuple[int, int]] = []
    if not text or _CANDIDATE.search(text) is None:
        return spans
    for match in _RUN.finditer(text):
        spans.extend(_pan_spans(match.group(), match.start()))
    return spans


def contains_pan(text: str) -> bool:
    return bool(pan_spans(text))


def looks_like_pan(value: str) -> bool:
    """True when the whole value is one PAN (with or without separators)."""
    return any(start == 0 and end == len(value) for start, end in pan_spans(value))


def _masked(text: str, spans: list[tuple[int, int]]) -> str:
    chars = list(text)
    for start, end in spans:
        digit_positions = [i for i in range(start, end) if chars[i].isdigit() or chars[i] == "*"]
        for i in digit_positions[6:-4]:
            chars[i] = "*"
    return "".join(chars)


def mask_pans(text: str) -> str:
    """``text`` with every PAN reduced to its first 6 and last 4 digits (the rest ``*``).

    Repeated until nothing is found: a mask can cut a longer digit run so that its remaining
    head is, by chance, a Luhn-valid 13+ digit number in its own right."""
    spans = pan_spans(text)
    while spans:
        text = _masked(text, spans)
        spans = pan_spans(text)
    return text


def mask_pans_bytes(data: bytes) -> bytes:
    """:func:`mask_pans` on raw bytes; returns ``data`` itself when there is nothing to mask.
    Non-ASCII payloads are read as UTF-8 (undecodable bytes kept as they are)."""
    if not data:
        return data
    if not data.isascii():
        text = data.decode("utf-8", "surrogateescape")
        masked = mask_pans(text)
        return data if masked is text else masked.encode("utf-8", "surrogateescape")
    if _CANDIDATE_BYTES.search(data) is None:
        return data
    out = None
    for match in _RUN_BYTES.finditer(data):
        run = match.group().decode("ascii")
        masked = mask_pans(run)
        if masked is not run:
            out = bytearray(data) if out is None else out
            out[match.start() : match.end()] = masked.encode("ascii")
    return bytes(out) if out is not None else data
