"""Build-time helper: resolve Spark packages (Maven coordinates) once, while building an image,
into a plain jar folder, so the container never reaches a Maven repository at run time.

    python docker/bake_spark_packages.py org.apache.spark:spark-sql-kafka-0-10_2.13:4.3.0 /opt/spark-kafka-jars

Spark's own Ivy resolution (``spark.jars.packages``) downloads the package and its transitive
dependencies; jars that pyspark already ships (same artifact, e.g. lz4-java, snappy-java, slf4j)
are left out so the runtime classpath never holds two versions of one library. The runtime adds
the folder with ``--jars <folder>/*.jar`` (spark-submit expands the glob).
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

# The trailing "-<version>.jar": dotted digits, optionally followed by qualifiers ("-7", ".Final").
_VERSION = re.compile(r"-\d+(\.\d+)+([.\-]\w+)*\.jar$")


def artifact_name(jar_name: str, ivy: bool = False) -> str:
    """Artifact id of a jar file name. Ivy's cache names files '<organisation>_<artifact>-<version>.jar'
    ('org.lz4_lz4-java-1.8.0.jar'); pyspark/jars names them '<artifact>-<version>.jar'
    ('lz4-java-1.11.0.jar'). Both give 'lz4-java'."""
    base = jar_name.split("_", 1)[1] if ivy else jar_name
    return _VERSION.sub("", base)


def jars_to_add(resolved: list[str], shipped: list[str]) -> list[str]:
    """Ivy-resolved jars whose artifact pyspark does not already ship."""
    shipped_artifacts = {artifact_name(name) for name in shipped}
    return sorted(name for name in resolved if artifact_name(name, ivy=True) not in shipped_artifacts)


def main(argv: list[str]) -> int:
    packages, target = argv[0], Path(argv[1])
    import pyspark
    from pyspark.sql import SparkSession

    shipped = [p.name for p in (Path(pyspark.__file__).parent / "jars").glob("*.jar")]
    with tempfile.TemporaryDirectory() as ivy:
        session = (
            SparkSession.builder.master("local[1]")
            .config("spark.jars.packages", packages)
            .config("spark.jars.ivy", ivy)
            .config("spark.ui.enabled", "false")
            .getOrCreate()
        )
        session.stop()
        resolved = [p.name for p in (Path(ivy) / "jars").glob("*.jar")]
        target.mkdir(parents=True, exist_ok=True)
        for name in jars_to_add(resolved, shipped):
            shutil.copy2(Path(ivy) / "jars" / name, target / name)
            print(f"added {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
