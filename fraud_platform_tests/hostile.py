"""The hostile-record corpus (``data/hostile_transactions.jsonl``): one line per kind of record a
broken or malicious producer sends, with the reason and the verdict the validator must reach
(``accept`` or the rejection rule, and the field). Grow it whenever a new kind is found."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CORPUS = Path(__file__).parent / "data" / "hostile_transactions.jsonl"
_FILL = "{FILL_2MiB}"


@dataclass(frozen=True)
class Hostile:
    reason: str
    expect: str  # "accept" or a rejection rule
    field: str | None
    payload: bytes | None

    @property
    def accepted(self) -> bool:
        return self.expect == "accept"


@lru_cache(maxsize=1)
def hostile_records() -> tuple[Hostile, ...]:
    records = []
    for line in CORPUS.read_text().splitlines():
        entry = json.loads(line)
        if "payload_hex" in entry:
            payload = bytes.fromhex(entry["payload_hex"])
        elif entry["payload"] is None:
            payload = None
        else:
            payload = entry["payload"].replace(_FILL, "C" * (2 * 1024 * 1024)).encode("utf-8")
        records.append(Hostile(entry["reason"], entry["expect"], entry["field"], payload))
    return tuple(records)
