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


# -- scanning for card numbers at rest ------------------------------------------------------------
def _texts_of_value(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (bytes, bytearray)):
        return [bytes(value).decode("utf-8", "replace")]
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in (str(k), *_texts_of_value(v))]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _texts_of_value(v)]
    return [str(value)]


def pans_in_files(root: Path) -> list[str]:
    """Every file below ``root`` whose content holds a PAN: Parquet and DuckDB files are decoded
    (their pages are compressed, a byte scan would see nothing), anything else is scanned as bytes."""
    import duckdb
    import pyarrow.parquet as pq

    from fraud_platform.domain.card_data import contains_pan, mask_pans_bytes

    found = []
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        if path.suffix == ".parquet":
            texts = [t for row in pq.read_table(path).to_pylist() for t in _texts_of_value(row)]
        elif path.suffix == ".duckdb":
            with duckdb.connect(str(path), read_only=True) as conn:
                tables = conn.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall()
                texts = [t for s, n in tables for row in conn.execute(f'SELECT * FROM "{s}"."{n}"').fetchall() for t in _texts_of_value(row)]
        else:
            data = path.read_bytes()
            texts = [] if mask_pans_bytes(data) is data else [data.decode("utf-8", "replace")]
        if any(contains_pan(t) for t in texts):
            found.append(str(path))
    return found


def pans_in_topic(settings, topic: str) -> list[str]:
    """Messages of ``topic`` (value, key or any header) holding a PAN, as 'topic@offset'."""
    from fraud_platform.domain.card_data import contains_pan
    from fraud_platform.infra.kafka import read_range, topic_partitions

    start = {p: 0 for p in topic_partitions(settings, topic)}
    found = []
    for chunk, _ in read_range(settings, topic, start):
        for msg in chunk:
            texts = _texts_of_value([msg.value(), msg.key(), *(v for _, v in msg.headers() or [])])
            if any(contains_pan(t) for t in texts):
                found.append(f"{topic}[{msg.partition()}]@{msg.offset()}")
    return found
