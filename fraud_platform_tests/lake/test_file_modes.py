"""Spark output under the platform home is private too: Hadoop's local file system sets permissions
from ``fs.permissions.umask-mode`` (not the process umask), which the platform's session sets to 077."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest


@pytest.mark.slow
def test_spark_parquet_files_and_folders_are_private(spark, tmp_path: Path) -> None:
    out = tmp_path / "scored"
    spark.range(10).selectExpr("id", "id % 2 AS part").write.partitionBy("part").parquet(str(out))
    written = [out, *out.rglob("*")]
    assert any(p.suffix == ".parquet" for p in written)
    loose = {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in written if stat.S_IMODE(p.stat().st_mode) & 0o077}
    assert not loose, loose
