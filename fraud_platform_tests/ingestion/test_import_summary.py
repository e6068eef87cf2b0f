"""`fraud-platform import` on a history whose columns differ from the platform's: the summary names
every dead-letter rule with its field and count, unmapped columns are warned about, the command
fails above the allowed rejected share, and label types can come per row from a column or a rule."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from fraud_platform.cli import main
from fraud_platform.infra.lake import LocalLakeStore

# What a real labels export looked like: `reported_at` instead of `known_at`, no label_type,
# scenario 0 on legitimate rows, and a column the platform has no field for.
BAD_LABELS = pd.DataFrame({
    "transaction_id": [f"imp-{i:08d}" for i in range(4)],
    "is_fraud": ["1", "0", "1", "0"],
    "reported_at": ["2026-02-08 10:00:00", "2026-02-08 11:00:00", "2026-02-09 12:00:00", "2026-02-09 13:00:00"],
    "fraud_scenario": ["1", "0", "2", "0"],
    "analyst": ["bob", "amy", "bob", "amy"],
    "status": ["chargeback", "confirmed_legit", "confirmed_fraud", "not-a-type"],
})


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
        raise SystemExit(0)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.fixture()
def labels_csv(tmp_path: Path) -> Path:
    path = tmp_path / "labels.csv"
    BAD_LABELS.to_csv(path, index=False)
    return path


def test_bad_labels_file_fails_with_a_summary_naming_rule_field_and_count(labels_csv, capsys, monkeypatch):
    monkeypatch.delenv("FRAUD_KAFKA_BOOTSTRAP_SERVERS", raising=False)  # a dry run needs no broker
    code, out, err = _run(capsys, "import", str(labels_csv), "--kind", "labels", "--dry-run")
    assert code == 3
    assert "labels: 4 rows, 0 valid, 4 to be dead-lettered (100.0%)" in out
    assert "rule missing_field, field label_type: 4 rows" in out
    assert "fields no column provides: label_type, known_at" in out
    for column in ("reported_at", "analyst", "status"):
        assert f"warning: column '{column}' maps to no labels field and is dropped" in err
    assert "100.0% of rows would be dead-lettered, above the allowed 5.0%" in err and "nothing was produced" in err

    # Mapped, with a rule for the label type: every row is valid; the dry run produces nothing.
    code, out, err = _run(capsys, "import", str(labels_csv), "--kind", "labels", "--dry-run",
                          "--map", "reported_at=known_at", "--label-type-rule", "fraud=chargeback,legit=confirmed_legit")
    assert code == 0 and "4 valid, 0 to be dead-lettered" in out and "dry run: nothing produced" in out
    assert "'reported_at'" not in err and "'analyst'" in err

    # The allowed share is configurable (flag or env).
    monkeypatch.setenv("FRAUD_IMPORT_MAX_REJECTED_SHARE", "1.0")
    code, out, _ = _run(capsys, "import", str(labels_csv), "--kind", "labels", "--dry-run")
    assert code == 0 and "dry run: nothing produced" in out


def test_per_row_label_types_from_a_column_land_row_by_row(labels_csv, kafka_settings, lake_root, capsys):
    code, out, err = _run(capsys, "import", str(labels_csv), "--kind", "labels", "--map", "reported_at=known_at",
                          "--map", "status=label_type", "--max-rejected-share", "0.3")
    assert code == 0, err
    assert "rule unknown_label_type, field label_type: 1 rows" in out
    store = LocalLakeStore(lake_root)
    labels = store.read_parquet(store.parquet_keys("raw", "labels")).to_pandas().set_index("transaction_id")
    assert labels["label_type"].to_dict() == {"imp-00000000": "chargeback", "imp-00000001": "confirmed_legit",
                                              "imp-00000002": "confirmed_fraud"}
    quarantine = store.read_parquet(store.parquet_keys("quarantine", "labels")).to_pandas()
    assert list(quarantine["rule"]) == ["unknown_label_type"]  # counts reconcile: 3 landed + 1 dead-lettered
