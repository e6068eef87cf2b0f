"""PAN detection and masking, and keyed pseudonyms."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fraud_platform.domain.card_data import contains_pan, looks_like_pan, mask_pans, mask_pans_bytes
from fraud_platform.domain.hashing import entity_key
from fraud_platform.infra.dead_letters import dead_letter_message, masked_payload
from fraud_platform.domain.validation import Rejection


@pytest.mark.parametrize("text, masked", [
    ("4539148803436467", "453914******6467"),
    ("4539 1488 0343 6467", "4539 14** **** 6467"),
    ("4539-1488-0343-6467", "4539-14**-****-6467"),
    ("card=4539148803436467;", "card=453914******6467;"),
    ("tok_4539148803436467", "tok_453914******6467"),  # an underscore is a separator, not part of a word
    ("4222222222222", "422222***2222"),  # 13 digits
    ("\u0664\u0665\u0663\u0669\u0661\u0664\u0668\u0668\u0660\u0663\u0664\u0663\u0666\u0664\u0666\u0667",
     "\u0664\u0665\u0663\u0669\u0661\u0664******\u0666\u0664\u0666\u0667"),  # Arabic-Indic digits
])
def test_pans_are_found_and_masked_to_first_six_last_four(text: str, masked: str) -> None:
    assert contains_pan(text) and mask_pans(text) == masked
    assert mask_pans_bytes(text.encode()) == masked.encode()


@pytest.mark.parametrize("text", [
    "4539148803436468",  # Luhn-invalid
    "45391488034364670000",  # 20 digits
    "x4539148803436467", "4539148803436467x",  # glued to letters: part of a token
    "tok_9972100ad4db277ef9d3b6091ff0af65", "tx-8d8702656fd4104df80535b4", "2026-01-02T10:00:00.123456Z",
    "453914880343",  # 12 digits
])
def test_non_pans_are_left_alone(text: str) -> None:
    assert not contains_pan(text) and mask_pans(text) == text
    data = text.encode()
    assert mask_pans_bytes(data) is data


def test_masking_never_leaves_a_pan_behind() -> None:
    # Masking the Luhn-valid tail cuts the run so that its head is, by chance, a Luhn-valid 13 digits.
    text = "8302021 9400464661902"
    assert contains_pan(text) and not contains_pan(mask_pans(text))
    assert not contains_pan(mask_pans_bytes(text.encode()).decode())


def test_a_pan_among_more_digit_groups_is_still_found() -> None:
    assert mask_pans("4539 1488 0343 6467 0000").startswith("4539 14** **** 6467")
    assert looks_like_pan("4539 1488 0343 6467") and not looks_like_pan("pan 4539 1488 0343 6467")


def test_dead_letters_mask_pans_in_escapes_key_and_headers_and_cut_oversized_ones() -> None:
    escaped = b'{"card_token":"' + "".join(f"\\u{ord(c):04x}" for c in "4539148803436467").encode() + b'"}'
    assert not contains_pan(masked_payload(escaped).decode())
    rejection = Rejection("unexpected_field", "pan", "'4539148803436467'", "field pan = 4539148803436467")
    letter = dead_letter_message(rejection, b"x" * 50_000 + b" 4539148803436467", b"4539148803436467", "tx", 0, 7, max_bytes=20_000)
    texts = [letter.value.decode(), letter.key.decode(), *(v.decode() for _, v in letter.headers)]
    assert not any(contains_pan(t) for t in texts) and letter.held_pan
    headers = dict(letter.headers)
    assert letter.truncated and len(letter.value) <= 20_000 and headers["dlq.original.size"] == b"50017"
    assert re.fullmatch(rb"[0-9a-f]{64}", headers["dlq.original.sha256"])


def test_entity_keys_are_keyed_and_no_key_is_written_in_the_source() -> None:
    assert entity_key("C000001", key="one") == entity_key("C000001", key="one") != entity_key("C000001", key="two")
    assert re.fullmatch(r"[0-9a-f]{16}", entity_key("C000001"))
    package = Path(__file__).resolve().parents[2] / "fraud_platform"
    sources = "".join(p.read_text() for p in package.rglob("*.py"))
    assert "dev-only-tokenisation-key" not in sources


def test_outside_local_a_missing_key_is_fatal(monkeypatch, tmp_path) -> None:
    from fraud_platform.security import MissingSecretError, tokenisation_key

    monkeypatch.delenv("FRAUD_TOKENISATION_KEY", raising=False)
    monkeypatch.setenv("FRAUD_PLATFORM_HOME", str(tmp_path))
    monkeypatch.setenv("FRAUD_PLATFORM_ENV", "docker")
    with pytest.raises(MissingSecretError, match="FRAUD_TOKENISATION_KEY"):
        tokenisation_key()
    monkeypatch.setenv("FRAUD_PLATFORM_ENV", "local")
    assert tokenisation_key() == tokenisation_key() == (tmp_path / "secrets" / "tokenisation.key").read_text()


@pytest.mark.slow  # imports the whole Dagster code location in a subprocess
def test_every_entry_point_refuses_to_start_without_a_key_outside_local(tmp_path) -> None:
    import os
    import subprocess
    import sys

    env = dict(os.environ, FRAUD_PLATFORM_ENV="docker", FRAUD_TOKENISATION_KEY="", FRAUD_PLATFORM_HOME=str(tmp_path))
    scorer = subprocess.run([sys.executable, "-m", "spark_streaming"], env=env, capture_output=True, text=True, timeout=120)
    assert scorer.returncode == 2 and scorer.stderr.strip().count("\n") == 0 and "FRAUD_TOKENISATION_KEY" in scorer.stderr
    dagster = subprocess.run([sys.executable, "-c", "import fraud_platform.definitions"], env=env, capture_output=True, text=True, timeout=300)
    assert dagster.returncode != 0 and "MissingSecretError" in dagster.stderr and "FRAUD_TOKENISATION_KEY" in dagster.stderr
    assert not any(tmp_path.iterdir())  # nothing was written before refusing
