"""One configuration path: the Dagster resources are the typed settings, read from env in one place
(fraud_platform/settings.py), each setting with one default."""

from __future__ import annotations

import ast
from pathlib import Path

import dagster as dg
import pytest

from fraud_platform.defs.resources import KafkaResource, OnlineStoreResource, WarehouseDbtResource, build_resources
from fraud_platform.settings import KafkaSettings, LakeProcessingSettings, LakeSettings, MlflowSettings, MonitoringSettings
from fraud_platform.settings import OnlineStoreSettings, PlatformSettings, SparkSettings, StreamingSettings, WarehouseSettings

REPO = Path(__file__).resolve().parents[2]
SETTINGS_MODULE = REPO / "fraud_platform" / "settings.py"

# Reads of the environment outside settings.py that are plumbing for child processes or libraries,
# not configuration: (file, variable) -> why. Anything else must be a field in fraud_platform/settings.py.
ENVIRON_READ_ALLOWED = {
    # Prepends the project's kernel folder to whatever JUPYTER_PATH dagstermill's kernel will see.
    ("fraud_platform/infra/notebooks.py", "JUPYTER_PATH"),
    # Saves and restores the variables it sets around a dbt subprocess (any name).
    ("fraud_platform/warehouse.py", "*"),
}


def _environ_reads(path: Path) -> list[tuple[int, str]]:
    """(line, variable) of every read of the environment: os.environ[...] / .get / in, os.getenv, a
    .setdefault whose result is used, and os.environ handed on whole ("*"). Writes (assignment, del,
    update, pop, a statement setdefault) and copies for child processes (dict(os.environ, ...),
    {**os.environ, ...}) are not reads."""
    tree = ast.parse(path.read_text(), str(path))
    environ_names = {"environ"} if any(
        isinstance(n, ast.ImportFrom) and n.module == "os" and any(a.name == "environ" for a in n.names) for n in ast.walk(tree)) else set()
    getenv_names = {"getenv"} if any(
        isinstance(n, ast.ImportFrom) and n.module == "os" and any(a.name == "getenv" for a in n.names) for n in ast.walk(tree)) else set()

    def is_environ(node: ast.AST) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == "environ" and isinstance(node.value, ast.Name) and node.value.id == "os") \
            or (isinstance(node, ast.Name) and node.id in environ_names)

    def name_of(node: ast.AST | None) -> str:
        return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else "*"

    statement_calls = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
    parents = {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def is_copy_for_children(node: ast.AST) -> bool:
        parent = parents.get(id(node))
        if isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name) and parent.func.id == "dict":
            return bool(parent.args) and parent.args[0] is node  # dict(os.environ, X=...)
        return isinstance(parent, ast.Dict) and node in parent.values and parent.keys[parent.values.index(node)] is None  # {**os.environ}

    reads = []
    for node in ast.walk(tree):
        if is_environ(node) and not isinstance(parents.get(id(node)), (ast.Subscript, ast.Attribute, ast.Compare)) \
                and not is_copy_for_children(node):
            reads.append((node.lineno, "*"))  # handed on whole (e.g. to a function that reads it)
        elif isinstance(node, ast.Attribute) and is_environ(node.value) and node.attr not in ("get", "setdefault", "update", "pop"):
            reads.append((node.lineno, "*"))  # os.environ.copy(), .items(), ...
        if isinstance(node, ast.Subscript) and is_environ(node.value) and isinstance(node.ctx, ast.Load):
            reads.append((node.lineno, name_of(node.slice)))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and is_environ(node.func.value):
            if node.func.attr == "get" or (node.func.attr == "setdefault" and id(node) not in statement_calls):
                reads.append((node.lineno, name_of(node.args[0] if node.args else None)))
        elif isinstance(node, ast.Call) and ((isinstance(node.func, ast.Attribute) and node.func.attr == "getenv"
                                              and isinstance(node.func.value, ast.Name) and node.func.value.id == "os")
                                             or (isinstance(node.func, ast.Name) and node.func.id in getenv_names)):
            reads.append((node.lineno, name_of(node.args[0] if node.args else None)))
        elif isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops) \
                and any(is_environ(c) for c in node.comparators):
            reads.append((node.lineno, name_of(node.left)))
    return reads


def test_no_environment_read_outside_the_settings_module() -> None:
    offenders = []
    for root in ("fraud_platform", "spark_streaming"):
        for path in sorted((REPO / root).rglob("*.py")):
            if path == SETTINGS_MODULE:
                continue
            relative = str(path.relative_to(REPO))
            offenders += [f"{relative}:{line} reads {name}" for line, name in _environ_reads(path)
                          if (relative, name) not in ENVIRON_READ_ALLOWED and (relative, "*") not in ENVIRON_READ_ALLOWED]
    assert offenders == [], "read configuration through fraud_platform/settings.py instead:\n" + "\n".join(offenders)


def test_the_environment_scan_finds_reads(tmp_path: Path) -> None:
    """Guards the scan above: each form of read is found, writes and copies for children are not."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\nfrom os import getenv\n"
        "a = os.environ.get('A')\nb = os.environ['B']\nc = os.getenv('C')\nd = 'D' in os.environ\ne = getenv('E')\n"
        "f = os.environ.setdefault('F', '1')\n"
        "g = load(os.environ)\nh = os.environ.copy()\n"
        "os.environ['W'] = '1'\nos.environ.setdefault('X', '1')\nenv = dict(os.environ, Y='1')\nos.environ.pop('Z', None)\n"
        "run(env={**os.environ, 'V': '1'})\n"
    )
    assert sorted(name for _, name in _environ_reads(sample)) == ["*", "*", "A", "B", "C", "D", "E", "F"]


def test_resources_are_the_typed_settings(monkeypatch) -> None:
    monkeypatch.setenv("FRAUD_LABEL_MATURITY_DAYS", "3")
    monkeypatch.setenv("FRAUD_SPARK_MASTER", "local[1]")
    monkeypatch.setenv("FRAUD_DRIFT_PSI_THRESHOLD", "0.4")
    monkeypatch.setenv("FRAUD_TOPIC_TRANSACTIONS", "tx-renamed")
    monkeypatch.setenv("FRAUD_MODEL_NAME", "renamed_model")
    monkeypatch.setenv("FRAUD_WAREHOUSE_PG_SCHEMA", "renamed_schema")
    monkeypatch.setenv("FRAUD_ONLINE_STORE_PREFIX", "renamed:")
    resources = build_resources(PlatformSettings.from_env())
    for key, settings_class in [("lake", LakeSettings), ("spark", SparkSettings), ("lake_processing", LakeProcessingSettings),
                                ("monitoring", MonitoringSettings), ("kafka", KafkaSettings), ("mlflow", MlflowSettings),
                                ("dbt", WarehouseSettings), ("online_store", OnlineStoreSettings)]:
        assert isinstance(resources[key], settings_class), key
    assert resources["lake_processing"].label_maturity_days == 3
    assert resources["spark"].master == "local[1]"
    assert resources["monitoring"].psi_threshold == 0.4
    assert resources["kafka"].topics.transactions == "tx-renamed"
    assert resources["mlflow"].model_name == "renamed_model"
    assert resources["dbt"].pg_schema == "renamed_schema" and resources["dbt"].target == "duckdb"
    assert resources["online_store"].key_prefix == "renamed:"
    # One setting, one default: the maturity window lives in LakeProcessingSettings only, and the
    # online store's transaction index follows it.
    assert "label_maturity_days" not in MonitoringSettings.model_fields
    assert resources["online_store"].tx_index_ttl_seconds == (3 + 2) * 86_400


def test_secrets_reach_the_resources_from_env_and_never_enter_dagster(monkeypatch) -> None:
    from dagster._core.remote_representation.external_data import RepositorySnap
    from dagster_shared.serdes import serialize_value

    secrets = {"FRAUD_KAFKA_SASL_PASSWORD": "kafka-s3cret", "FRAUD_WAREHOUSE_PG_PASSWORD": "pg-s3cret",
               "FRAUD_ONLINE_STORE_URL": "redis://:url-s3cret@127.0.0.1:1/0", "FRAUD_ONLINE_STORE_PASSWORD": "store-s3cret"}
    for name, value in {**secrets, "FRAUD_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}.items():
        monkeypatch.setenv(name, value)
    resources = {k: v for k, v in build_resources(PlatformSettings.from_env()).items() if k in ("kafka", "dbt", "online_store")}
    seen: dict[str, object] = {}

    @dg.asset
    def probe(kafka: KafkaResource, dbt: WarehouseDbtResource, online_store: OnlineStoreResource) -> None:
        seen.update(kafka=kafka.client_config()["sasl.password"],
                    pg=dbt.pg_password, url=online_store.url, password=online_store.password)

    assert dg.materialize([probe], resources=resources).success
    assert seen == {"kafka": "kafka-s3cret", "pg": "pg-s3cret", "url": secrets["FRAUD_ONLINE_STORE_URL"], "password": "store-s3cret"}
    snapshot = serialize_value(RepositorySnap.from_def(dg.Definitions(assets=[probe], resources=resources).get_repository_def()))
    assert "FRAUD_KAFKA_SASL_PASSWORD" in snapshot  # the resources name the variables…
    assert "s3cret" not in snapshot  # …but never hold the values
    assert "s3cret" not in repr(resources["kafka"]) + repr(resources["dbt"]) + repr(resources["online_store"])


def test_spark_master_has_one_default(monkeypatch) -> None:
    """FRAUD_SPARK_MASTER is one setting: the streaming jobs default to the platform's Spark master."""
    monkeypatch.delenv("FRAUD_SPARK_MASTER", raising=False)
    assert StreamingSettings.load().spark_master == SparkSettings().master == PlatformSettings.from_env().spark.master
    monkeypatch.setenv("FRAUD_SPARK_MASTER", "local[1]")
    assert StreamingSettings.load().spark_master == "local[1]" == SparkSettings.from_env().master
    assert StreamingSettings.load({"spark_master": "local[3]"}).spark_master == "local[3]"


def test_feature_pipeline_checkpoint_is_a_setting(monkeypatch, tmp_path: Path) -> None:
    from spark_streaming.feature_pipeline import load_config, parse_args

    monkeypatch.delenv("FRAUD_FEATURES_CHECKPOINT", raising=False)
    default = load_config(parse_args([]))
    assert default.checkpoint == default.platform.home / "streaming" / "features-checkpoint"
    monkeypatch.setenv("FRAUD_FEATURES_CHECKPOINT", str(tmp_path / "from-env"))
    assert load_config(parse_args([])).checkpoint == tmp_path / "from-env"
    assert load_config(parse_args(["--checkpoint", str(tmp_path / "flag")])).checkpoint == tmp_path / "flag"


@pytest.mark.parametrize("value, running", [("stopped", False), ("STOPPED", False), ("running", True)])
def test_automation_status_keeps_its_meaning(monkeypatch, value: str, running: bool) -> None:
    from fraud_platform.settings import OrchestrationSettings

    monkeypatch.setenv("FRAUD_AUTOMATION_DEFAULT_STATUS", value)
    assert OrchestrationSettings.from_env().automation_running is running


def test_platform_env_is_one_setting(monkeypatch) -> None:
    """FRAUD_PLATFORM_ENV is read once: the orchestration environment and the tokenisation-key rule
    agree on it, and a deployment name other than local/docker is accepted by both."""
    from fraud_platform.security import MissingSecretError, tokenisation_key
    from fraud_platform.settings import OrchestrationSettings

    monkeypatch.setenv("FRAUD_PLATFORM_ENV", "Production")
    monkeypatch.delenv("FRAUD_TOKENISATION_KEY", raising=False)
    assert OrchestrationSettings.from_env().environment == "production"
    with pytest.raises(MissingSecretError):
        tokenisation_key()


def test_decision_log_is_one_settings_class_for_api_scorer_and_dagster(monkeypatch, tmp_path: Path) -> None:
    """DecisionLogSettings is where the API, the streaming scorer and Dagster's shadow report find the
    decision log; the env var names are unchanged and the decisions DSN wins over the alerts one."""
    from fraud_platform.defs.ml.shadow import shadow_log_from_settings
    from fraud_platform.infra.decision_log import DecisionLogTarget, SQLiteBackend
    from fraud_platform.settings import ApiSettings, DecisionLogSettings
    from spark_streaming.job import decision_log_target

    for name in ("FRAUD_DECISIONS_POSTGRES_DSN", "FRAUD_ALERTS_POSTGRES_DSN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FRAUD_DECISIONS_SQLITE_PATH", str(tmp_path / "log.sqlite"))
    monkeypatch.setenv("FRAUD_DECISIONS_TABLE", "renamed_decisions")
    settings = DecisionLogSettings.from_env()
    assert (settings.sqlite_path, settings.table, settings.postgres_dsn) == (tmp_path / "log.sqlite", "renamed_decisions", None)
    assert ApiSettings.from_env().decision_log == settings
    assert decision_log_target() == DecisionLogTarget.from_settings(settings) == DecisionLogTarget(
        "renamed_decisions", tmp_path / "log.sqlite", None)
    shadow = shadow_log_from_settings()
    assert isinstance(shadow.backend, SQLiteBackend) and shadow.backend.table == "renamed_decisions"
    shadow.backend.close()

    monkeypatch.setenv("FRAUD_ALERTS_POSTGRES_DSN", "postgresql://alerts-s3cret@127.0.0.1/a")
    assert DecisionLogSettings.from_env().postgres_dsn.get_secret_value().endswith("/a")
    monkeypatch.setenv("FRAUD_DECISIONS_POSTGRES_DSN", "postgresql://decisions-s3cret@127.0.0.1/d")
    chosen = DecisionLogSettings.from_env()
    assert chosen.postgres_dsn.get_secret_value().endswith("/d") and "s3cret" not in repr(chosen) + repr(ApiSettings.from_env())
