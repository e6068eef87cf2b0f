"""The deployment's one-shot scripts, run for real with the client binaries replaced by recorders
(kafka-topics.sh, mc), and the build-time Spark connector baking against a real local Spark."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from fraud_platform.settings import TopicNames
from fraud_platform_tests.deploy._compose import DEPLOY, REPO, dockerfile_instructions, environment, load_compose


def _recorder(folder: Path, name: str, log: Path, stdout: str = "") -> Path:
    """An executable that appends its argv (JSON) to `log` and prints `stdout`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(
        textwrap.dedent(
            f"""\
            #!{sys.executable}
            import json, sys
            with open({str(log)!r}, "a") as fh:
                fh.write(json.dumps(sys.argv[1:]) + "\\n")
            sys.stdout.write({stdout!r})
            """
        )
    )
    path.chmod(0o755)
    return path


def _calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _base_env(tmp_path: Path) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}


# ----------------------------------------------------------------------------- Kafka topics
def test_kafka_init_creates_exactly_the_platform_topics(tmp_path):
    """With kafka-init's environment, the script creates every topic the platform uses
    (TopicNames) with the configured partition count, idempotently (--if-not-exists)."""
    log = tmp_path / "calls.jsonl"
    _recorder(tmp_path / "bin", "kafka-topics.sh", log)
    env = {**_base_env(tmp_path), **environment(load_compose()["services"]["kafka-init"]), "KAFKA_BIN": str(tmp_path / "bin")}
    subprocess.run(["bash", str(DEPLOY / "kafka/create-topics.sh")], env=env, check=True, capture_output=True)

    creates = [call for call in _calls(log) if "--create" in call]
    created = {call[call.index("--topic") + 1] for call in creates}
    expected = TopicNames()
    assert created == {
        expected.transactions, expected.transactions_dlq, expected.labels, expected.labels_dlq, expected.predictions,
    }
    for call in creates:
        assert "--if-not-exists" in call
        assert call[call.index("--bootstrap-server") + 1] == "kafka:9092,kafka-2:9092,kafka-3:9092"
        assert call[call.index("--partitions") + 1] == str(expected.partitions)
        # Replicated on all three brokers; acks=all needs two in sync.
        assert call[call.index("--replication-factor") + 1] == "3"
        assert call[call.index("--config") + 1] == "min.insync.replicas=2"
    assert _calls(log)[-1][-1] == "--list"


def test_kafka_init_follows_renamed_topics(tmp_path):
    """The same FRAUD_TOPIC_* overrides the platform reads rename the created topics."""
    log = tmp_path / "calls.jsonl"
    _recorder(tmp_path / "bin", "kafka-topics.sh", log)
    overrides = {
        "FRAUD_TOPIC_TRANSACTIONS": "acme.tx", "FRAUD_TOPIC_TRANSACTIONS_DLQ": "acme.tx.dlq",
        "FRAUD_TOPIC_LABELS": "acme.labels", "FRAUD_TOPIC_LABELS_DLQ": "acme.labels.dlq",
        "FRAUD_TOPIC_PREDICTIONS": "acme.scores", "FRAUD_TOPIC_PARTITIONS": "6",
    }
    env = {**_base_env(tmp_path), **overrides, "KAFKA_BIN": str(tmp_path / "bin")}
    subprocess.run(["bash", str(DEPLOY / "kafka/create-topics.sh")], env=env, check=True, capture_output=True)

    os_env = dict(os.environ)
    try:
        os.environ.update(overrides)
        topics = TopicNames.from_env()
    finally:
        os.environ.clear()
        os.environ.update(os_env)
    creates = [call for call in _calls(log) if "--create" in call]
    assert {call[call.index("--topic") + 1] for call in creates} == {
        topics.transactions, topics.transactions_dlq, topics.labels, topics.labels_dlq, topics.predictions,
    }
    assert {call[call.index("--partitions") + 1] for call in creates} == {"6"}
    # Outside compose the defaults are the embedded broker's 1/1, the same as TopicNames'.
    assert {call[call.index("--replication-factor") + 1] for call in creates} == {str(topics.replication_factor)} == {"1"}
    assert {call[call.index("--config") + 1] for call in creates} == {f"min.insync.replicas={topics.min_insync_replicas}"}


def test_kafka_init_fails_when_topic_creation_fails(tmp_path):
    failing = tmp_path / "bin" / "kafka-topics.sh"
    failing.parent.mkdir(parents=True)
    failing.write_text("#!/bin/sh\nexit 1\n")
    failing.chmod(0o755)
    env = {**_base_env(tmp_path), "KAFKA_BIN": str(failing.parent)}
    result = subprocess.run(["bash", str(DEPLOY / "kafka/create-topics.sh")], env=env, capture_output=True)
    assert result.returncode != 0  # compose then never starts the services waiting for kafka-init


# ----------------------------------------------------------------------------- MinIO buckets
def test_minio_init_creates_buckets_and_a_scoped_platform_account(tmp_path):
    log = tmp_path / "calls.jsonl"
    _recorder(tmp_path / "bin", "mc", log)
    service_env = environment(load_compose()["services"]["minio-init"])
    env = {**_base_env(tmp_path), **service_env, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    subprocess.run(["/bin/sh", str(DEPLOY / "minio/create-buckets.sh")], env=env, check=True, capture_output=True)

    calls = _calls(log)
    lake, artifacts = service_env["FRAUD_LAKE_S3_BUCKET"], service_env["MLFLOW_ARTIFACTS_BUCKET"]
    assert calls[0] == ["alias", "set", "fraud", "http://minio:9000", service_env["MINIO_ROOT_USER"], service_env["MINIO_ROOT_PASSWORD"]]
    assert ["mb", "--ignore-existing", f"fraud/{lake}"] in calls
    assert ["mb", "--ignore-existing", f"fraud/{artifacts}"] in calls
    assert ["admin", "user", "add", "fraud", service_env["FRAUD_S3_ACCESS_KEY"], service_env["FRAUD_S3_SECRET_KEY"]] in calls
    assert ["admin", "policy", "attach", "fraud", "fraud-platform-rw", "--user", service_env["FRAUD_S3_ACCESS_KEY"]] in calls

    [policy_call] = [call for call in calls if call[:3] == ["admin", "policy", "create"]]
    policy = json.loads(Path(policy_call[-1]).read_text())
    resources = {resource for statement in policy["Statement"] for resource in statement["Resource"]}
    assert resources == {
        f"arn:aws:s3:::{lake}", f"arn:aws:s3:::{artifacts}", f"arn:aws:s3:::{lake}/*", f"arn:aws:s3:::{artifacts}/*",
    }
    actions = {action for statement in policy["Statement"] for action in statement["Action"]}
    assert not any(action.startswith("admin:") or action == "s3:*" for action in actions)


def test_minio_init_does_not_reattach_an_attached_policy(tmp_path):
    log = tmp_path / "calls.jsonl"
    _recorder(tmp_path / "bin", "mc", log, stdout="AccessKey: x\nPolicyName: fraud-platform-rw\n")
    env = {
        **_base_env(tmp_path), **environment(load_compose()["services"]["minio-init"]),
        "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
    }
    subprocess.run(["/bin/sh", str(DEPLOY / "minio/create-buckets.sh")], env=env, check=True, capture_output=True)
    assert not [call for call in _calls(log) if call[:3] == ["admin", "policy", "attach"]]


def test_minio_init_refuses_to_run_without_credentials(tmp_path):
    log = tmp_path / "calls.jsonl"
    _recorder(tmp_path / "bin", "mc", log)
    env = {**_base_env(tmp_path), "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    result = subprocess.run(["/bin/sh", str(DEPLOY / "minio/create-buckets.sh")], env=env, capture_output=True)
    assert result.returncode != 0 and not _calls(log)


# ----------------------------------------------------------------------------- pools
def test_every_pool_used_by_the_code_has_an_explicit_limit():
    sys.path.insert(0, str(DEPLOY))
    try:
        import apply_pool_limits
    finally:
        sys.path.remove(str(DEPLOY))
    limits = apply_pool_limits.load_pool_limits()
    assert limits == {"duckdb_warehouse": 1, "kafka_landing": 1}
    used = set()
    for path in (REPO / "fraud_platform").rglob("*.py"):
        text = path.read_text()
        used |= set(re.findall(r"""\bpool\s*=\s*["'](\w+)["']""", text))
        used |= set(re.findall(r"""^\w*POOL\w*\s*=\s*["'](\w+)["']""", text, flags=re.MULTILINE))
    assert used <= set(limits), f"pools without a limit in deploy/concurrency_pools.yaml: {used - set(limits)}"


def test_pool_limit_file_is_validated(tmp_path):
    sys.path.insert(0, str(DEPLOY))
    try:
        import apply_pool_limits
    finally:
        sys.path.remove(str(DEPLOY))
    bad = tmp_path / "pools.yaml"
    for content in ("pools: {}\n", "pools:\n  duckdb_warehouse: one\n", "pools:\n  duckdb_warehouse: -1\n", "other: 1\n"):
        bad.write_text(content)
        with pytest.raises(ValueError):
            apply_pool_limits.load_pool_limits(bad)


# ----------------------------------------------------------------------------- Spark connector
def _bake_module():
    sys.path.insert(0, str(REPO / "docker"))
    try:
        import bake_spark_packages
    finally:
        sys.path.remove(str(REPO / "docker"))
    return bake_spark_packages


def test_baked_connector_skips_jars_pyspark_already_ships():
    """Ivy resolves the Kafka connector with transitive jars pyspark already has (lz4, snappy,
    slf4j, zstd); only the missing ones go into the image so no library is there twice."""
    import pyspark

    bake = _bake_module()
    shipped = [p.name for p in (Path(pyspark.__file__).parent / "jars").glob("*.jar")]
    resolved = [
        "org.apache.spark_spark-sql-kafka-0-10_2.13-4.3.0.jar",
        "org.apache.spark_spark-token-provider-kafka-0-10_2.13-4.3.0.jar",
        "org.apache.kafka_kafka-clients-3.9.1.jar",
        "org.apache.commons_commons-pool2-2.12.1.jar",
        "org.lz4_lz4-java-1.8.0.jar",
        "org.xerial.snappy_snappy-java-1.1.10.5.jar",
        "org.slf4j_slf4j-api-2.0.16.jar",
        "com.github.luben_zstd-jni-1.5.6-4.jar",
    ]
    assert bake.jars_to_add(resolved, shipped) == [
        "org.apache.commons_commons-pool2-2.12.1.jar",
        "org.apache.kafka_kafka-clients-3.9.1.jar",
        "org.apache.spark_spark-sql-kafka-0-10_2.13-4.3.0.jar",
        "org.apache.spark_spark-token-provider-kafka-0-10_2.13-4.3.0.jar",
    ]


def _scorer_image_env() -> dict[str, str]:
    """ENV of spark_streaming/Dockerfile with ${NAME} expanded from earlier ENV/ARG defaults."""
    values: dict[str, str] = {}
    for keyword, args in dockerfile_instructions(REPO / "spark_streaming/Dockerfile"):
        if keyword == "ARG" and "=" in args:
            name, default = args.split("=", 1)
            values[name] = default
        if keyword == "ENV":
            for item in shlex.split(args):
                name, value = item.split("=", 1)
                values[name] = re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], value)
    return values


@pytest.mark.timeout(300)
def test_scorer_spark_session_sees_the_baked_jars(tmp_path):
    """PYSPARK_SUBMIT_ARGS as set by the scorer image: a jar in the baked-jars folder is on the
    driver's classpath for a py4j Class.forName() probe (what spark_streaming checks before
    format("kafka")) and listed in spark.jars for executors. Uses a real local Spark."""
    image_env = _scorer_image_env()
    assert image_env["FRAUD_STREAM_SOURCE"] == "native"
    assert image_env["FRAUD_SPARK_KAFKA_PACKAGE"].startswith("org.apache.spark:spark-sql-kafka-0-10_2.13:")

    jars = tmp_path / "jars"
    (tmp_path / "src").mkdir()
    jars.mkdir()
    (tmp_path / "src" / "FraudDeployProbe.java").write_text("public class FraudDeployProbe { }\n")
    subprocess.run(["javac", "-d", str(tmp_path / "classes"), str(tmp_path / "src" / "FraudDeployProbe.java")], check=True)
    with zipfile.ZipFile(jars / "fraud-deploy-probe.jar", "w") as jar:
        jar.write(tmp_path / "classes" / "FraudDeployProbe.class", "FraudDeployProbe.class")

    submit_args = image_env["PYSPARK_SUBMIT_ARGS"].replace(image_env["FRAUD_SPARK_JARS_DIR"], str(jars))
    probe = textwrap.dedent(
        """\
        from pyspark.sql import SparkSession
        spark = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").getOrCreate()
        spark._jvm.java.lang.Class.forName("FraudDeployProbe")
        print("SPARK_JARS=" + spark.sparkContext.getConf().get("spark.jars", ""))
        spark.stop()
        """
    )
    env = {**os.environ, "PYSPARK_SUBMIT_ARGS": submit_args, "PYSPARK_PYTHON": sys.executable}
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"SPARK_JARS=file:{jars}/fraud-deploy-probe.jar" in result.stdout


# ----------------------------------------------------------------------------- s3a in the platform image
def test_platform_image_bakes_hadoop_aws_matching_pyspark_hadoop():
    """hadoop-aws must be the exact Hadoop version of pyspark's hadoop-client jars."""
    import pyspark

    shipped = [p.name for p in (Path(pyspark.__file__).parent / "jars").glob("hadoop-client-api-*.jar")]
    [hadoop_version] = [re.search(r"hadoop-client-api-([\d.]+)\.jar", name).group(1) for name in shipped]
    args = dict(
        args.split("=", 1)
        for keyword, args in dockerfile_instructions(REPO / "docker/dagster.Dockerfile")
        if keyword == "ARG" and "=" in args
    )
    assert args["HADOOP_VERSION"] == hadoop_version
    dockerfile = (REPO / "docker/dagster.Dockerfile").read_text()
    assert '"org.apache.hadoop:hadoop-aws:${HADOOP_VERSION}"' in dockerfile
    assert 'cp deploy/spark/spark-defaults.conf "${SPARK_HOME}/conf/spark-defaults.conf"' in dockerfile


def test_spark_driver_and_executor_containers_have_the_env_that_spark_defaults_reads():
    text = "\n".join(
        line for line in (DEPLOY / "spark/spark-defaults.conf").read_text().splitlines() if not line.lstrip().startswith("#")
    )
    needed = set(re.findall(r"\$\{env\.(\w+)\}", text)) | {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert {"FRAUD_LAKE_S3_ENDPOINT_URL", "AWS_REGION"} <= needed
    services = load_compose()["services"]
    for name in ("dagster-code", "spark-worker"):
        assert needed <= set(environment(services[name])), name


@pytest.mark.timeout(300)
def test_spark_defaults_point_s3a_at_the_lake_endpoint_from_env(tmp_path):
    """deploy/spark/spark-defaults.conf loaded by a real Spark (as $SPARK_HOME/conf is in the image):
    the Hadoop configuration resolves the endpoint and region from the env vars."""
    probe = textwrap.dedent(
        """\
        from pyspark.sql import SparkSession
        spark = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").getOrCreate()
        conf = spark._jsc.hadoopConfiguration()
        for key in ("fs.s3a.endpoint", "fs.s3a.endpoint.region", "fs.s3a.path.style.access"):
            print(key + "=" + str(conf.get(key)))
        spark.stop()
        """
    )
    env = {
        **os.environ, "SPARK_CONF_DIR": str(DEPLOY / "spark"), "PYSPARK_PYTHON": sys.executable,
        "FRAUD_LAKE_S3_ENDPOINT_URL": "http://minio.test:9000", "AWS_REGION": "eu-west-3",
    }
    env.pop("PYSPARK_SUBMIT_ARGS", None)
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fs.s3a.endpoint=http://minio.test:9000" in result.stdout
    assert "fs.s3a.endpoint.region=eu-west-3" in result.stdout
    assert "fs.s3a.path.style.access=true" in result.stdout
