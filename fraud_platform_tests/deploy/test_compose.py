"""Static validation of the compose deployment (docker-compose.yml, Dockerfiles, deploy/, .env.example).

No Docker engine runs on the development machine, so these tests check everything that can be
checked without one: the file against the Compose specification (the compose-spec parser), the
references between services, files, env vars and the platform's code, and that no secret is
committed.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import get_args

import pytest
import yaml

from fraud_platform_tests.deploy._compose import (
    COMPOSE_FILE,
    DEPLOY,
    ENV_EXAMPLE,
    REPO,
    MissingVariable,
    as_list,
    dagster_yaml_env_vars,
    dockerfile_instructions,
    env_vars_read_by_code,
    environment,
    interpolate,
    is_dockerignored,
    iter_strings,
    load_compose,
    load_raw_compose,
    mentioned_in_env_file,
    parse_env_file,
    referenced_variables,
)

# Services whose containers run the platform's own code (built from this repository).
PLATFORM_SERVICES = ("dagster-init", "dagster-code", "dagster-webserver", "dagster-daemon", "spark-worker", "scorer")
ONE_SHOT_SERVICES = ("kafka-init", "minio-init", "dagster-init")

# Env vars set on platform containers that the platform's code does not read itself, with the
# library that does. Anything else must be read by fraud_platform/, spark_streaming/ or dbt/.
THIRD_PARTY_ENV_VARS = {
    "AWS_ACCESS_KEY_ID": "boto3 / botocore (lake on MinIO, MLflow artifacts)",
    "AWS_SECRET_ACCESS_KEY": "boto3 / botocore",
    "SPARK_WORKER_DIR": "Spark standalone worker scratch folder",
}

SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$|_KEY_ID$|DSN", re.IGNORECASE)


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


# ----------------------------------------------------------------------------- the specification
def test_compose_file_conforms_to_the_compose_specification(compose):
    """Parsed by compose-spec (a strict Compose Specification parser): unknown keys, wrong types,
    bad durations, port syntax or depends_on conditions are rejected."""
    from compose_spec import PyCompose

    parsed = PyCompose.from_json(json.dumps(compose))
    parsed.validate()
    assert sorted(parsed.service_names()) == sorted(compose["services"])


def test_the_spec_parser_rejects_a_broken_file(compose):
    """Guards the test above: the parser really validates (a typo'd key must not pass)."""
    from compose_spec import PyCompose

    broken = json.loads(json.dumps(compose))
    broken["services"]["kafka"]["helthcheck"] = broken["services"]["kafka"].pop("healthcheck")
    with pytest.raises(ValueError):
        PyCompose.from_json(json.dumps(broken))


def test_expected_services_are_defined(services):
    expected = {
        "kafka", "kafka-init", "postgres", "minio", "minio-init", "mlflow", "dagster-init", "dagster-code",
        "dagster-webserver", "dagster-daemon", "spark-master", "spark-worker", "scorer", "prometheus",
    }
    assert expected <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["spark-master"]["image"].startswith("apache/spark:")
    assert services["minio-init"]["image"].startswith("minio/mc:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper


# ----------------------------------------------------------------------------- variables, secrets
def test_every_variable_used_is_declared_in_env_example():
    declared = parse_env_file()
    used = referenced_variables(load_raw_compose())
    missing = sorted(set(used) - set(declared))
    assert not missing, f"${{VAR}} used in docker-compose.yml but not declared in .env.example: {missing}"


def test_compose_uses_only_braced_variables():
    """Bare $NAME is easy to confuse with a shell variable meant for the container ($$NAME)."""
    bare = [
        text for text in iter_strings(load_raw_compose())
        if re.search(r"(?<!\$)\$(?!\$)(?!\{)[A-Za-z_]", text.replace("$$", ""))
    ]
    assert not bare, bare


def test_secrets_are_required_so_compose_fails_fast_without_env():
    """Every secret is ${NAME:?...}: without a .env, `docker compose up` stops instead of starting
    services with empty passwords."""
    used = referenced_variables(load_raw_compose())
    for name in ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "FRAUD_S3_SECRET_KEY", "FRAUD_TOKENISATION_KEY"):
        assert used.get(name) == {":?"}, f"{name} must always be used as ${{{name}:?...}}, got {used.get(name)}"
    with pytest.raises(MissingVariable):
        interpolate(load_raw_compose(), {})


def test_no_secret_literals_in_compose():
    raw = load_raw_compose()
    for name, service in raw["services"].items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key) and value:
                without_refs = re.sub(r"\$\{[^}]*\}", "", value)
                # What is left may only be URL structure (scheme, host, port, database), never credentials.
                for userinfo in re.findall(r"://([^/@\s]*)@", without_refs):
                    assert userinfo in ("", ":"), f"{name}.{key}: literal credentials in a URL"
                assert re.search(r"\$\{", value), f"{name}.{key} holds a literal secret: {value!r}"
    for text in iter_strings(raw):
        for userinfo in re.findall(r"://([^/@\s]+)@", text):
            assert re.fullmatch(r"(\$\{[^}]+\})(:\$\{[^}]+\})?", userinfo), f"literal credentials in {text!r}"


def test_env_example_holds_placeholders_only():
    for key, value in parse_env_file().items():
        if SECRET_NAME.search(key) and not key.endswith("_USERNAME"):
            assert value == "" or value.startswith("change-me"), f".env.example {key} must be a change-me placeholder"
    text = ENV_EXAMPLE.read_text()
    assert "BEGIN PRIVATE KEY" not in text


def test_dotenv_is_gitignored():
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert ".env" in [line.strip() for line in ignored]


def test_env_example_declares_every_env_var_the_code_reads():
    """.env.example is the complete list of settings: every env var read by fraud_platform/,
    spark_streaming/ or dbt/profiles.yml is declared there (active, or as a commented reference)."""
    read = env_vars_read_by_code()
    assert {"FRAUD_PLATFORM_HOME", "FRAUD_KAFKA_BOOTSTRAP_SERVERS", "MLFLOW_TRACKING_URI"} <= set(read)  # the scan works
    missing = {name: files for name, files in read.items() if name not in mentioned_in_env_file()}
    assert not missing, f"env vars read by the code but missing from .env.example: {missing}"


def test_platform_container_env_vars_are_read_by_the_code(services):
    """A name typo in compose (FRAUD_KAFKA_BOOTSTRAP instead of FRAUD_KAFKA_BOOTSTRAP_SERVERS) would
    silently fall back to an embedded default; every env var given to a platform container must
    be read by the code, by deploy/dagster.yaml, or by a named third-party library."""
    known = set(env_vars_read_by_code()) | dagster_yaml_env_vars() | set(THIRD_PARTY_ENV_VARS)
    unknown = {
        name: sorted(set(environment(services[name])) - known)
        for name in PLATFORM_SERVICES
        if set(environment(services[name])) - known
    }
    assert not unknown, f"env vars nobody reads: {unknown}"


def test_compose_environment_builds_the_intended_platform_settings(services, monkeypatch):
    """The dagster containers' env, fed to the real settings class, selects the compose services."""
    from fraud_platform.settings import PlatformSettings

    for key in list(__import__("os").environ):
        if key.startswith(("FRAUD_", "MLFLOW_", "AWS_")):
            monkeypatch.delenv(key, raising=False)
    for key, value in environment(services["dagster-code"]).items():
        monkeypatch.setenv(key, value)
    settings = PlatformSettings.from_env()
    assert settings.lake.backend == "s3"
    assert settings.lake.bucket == parse_env_file()["FRAUD_LAKE_S3_BUCKET"]
    assert settings.lake.s3_endpoint_url == "http://minio:9000"
    assert settings.kafka.resolved_bootstrap() == KAFKA_BOOTSTRAP
    assert (settings.kafka.topics.replication_factor, settings.kafka.topics.min_insync_replicas) == (3, 2)
    assert settings.kafka.security_protocol == "PLAINTEXT" and settings.kafka.sasl_password is None
    assert settings.mlflow.tracking_uri == "http://mlflow:5000"
    assert settings.spark.master == "spark://spark-master:7077"
    assert settings.tokenisation_key.get_secret_value() == parse_env_file()["FRAUD_TOKENISATION_KEY"]
    assert settings.warehouse.duckdb_path.startswith("/var/lib/fraud_platform/")
    assert settings.warehouse.pg_host == "postgres"
    assert settings.kafka.topics.model_dump()["transactions"] == "transactions"


def test_scorer_environment_is_accepted_by_the_scorer_config(services, monkeypatch):
    """The scorer's env, loaded by spark_streaming's own config class: source, checkpoint,
    metrics port and alert DSN are valid values of the fields the scorer reads."""
    from spark_streaming.config import ENV_VARS, StreamConfig

    env = environment(services["scorer"])
    assert env["FRAUD_STREAM_SOURCE"] in get_args(StreamConfig.model_fields["source"].annotation)
    for key in list(__import__("os").environ):
        if key.startswith(("FRAUD_", "MLFLOW_", "AWS_")):
            monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    config = StreamConfig.load()
    assert config.source == "native"
    assert config.metrics_port == 9108
    assert config.alerts_postgres_dsn is not None
    assert config.alerts_postgres_dsn.get_secret_value().endswith("@postgres:5432/fraud_alerts")
    assert str(config.checkpoint).startswith("/var/lib/fraud_platform/")
    assert config.platform.kafka.resolved_bootstrap() == KAFKA_BOOTSTRAP
    assert set(ENV_VARS.values()) <= mentioned_in_env_file()


# ----------------------------------------------------------------------------- files and commands
def _build(service: dict) -> dict | None:
    build = service.get("build")
    if isinstance(build, str):
        return {"context": build, "dockerfile": "Dockerfile"}
    return build


def test_build_contexts_and_dockerfiles_exist(services):
    built = {name: _build(service) for name, service in services.items() if _build(service)}
    assert {"dagster-code", "mlflow", "scorer"} <= set(built)
    for name, build in built.items():
        context = (REPO / build["context"]).resolve()
        assert context.is_dir(), f"{name}: build context {build['context']} missing"
        assert (context / build.get("dockerfile", "Dockerfile")).is_file(), f"{name}: Dockerfile missing"
    assert built["scorer"]["dockerfile"] == "spark_streaming/Dockerfile"
    assert built["dagster-code"]["dockerfile"] == "docker/dagster.Dockerfile"


def test_services_sharing_an_image_tag_build_it_identically(services):
    by_image: dict[str, list] = {}
    for service in services.values():
        if _build(service) and service.get("image"):
            by_image.setdefault(service["image"], []).append(_build(service))
    for image, builds in by_image.items():
        assert all(build == builds[0] for build in builds), image


@pytest.mark.parametrize("dockerfile", ["docker/dagster.Dockerfile", "docker/mlflow.Dockerfile", "spark_streaming/Dockerfile"])
def test_dockerfile_inputs_exist_in_the_build_context(dockerfile):
    """COPY sources exist and are not excluded by .dockerignore; files the build runs or copies
    from the context (scripts, deploy/ configs, constraints) are sent with the context too."""
    instructions = dockerfile_instructions(REPO / dockerfile)
    assert instructions[0][0] == "FROM"
    for keyword, args in instructions:
        if keyword == "COPY" and "--from" not in args:
            *sources, _dest = args.split()
            for source in sources:
                if source == ".":
                    continue
                assert (REPO / source).exists(), f"{dockerfile}: COPY {source} does not exist"
                assert not is_dockerignored(source), f"{dockerfile}: COPY {source} is excluded by .dockerignore"
        if keyword in ("RUN", "COPY"):
            for path in re.findall(r"(?<![\w/.$-])((?:deploy|docker|fraud_platform|spark_streaming)/[\w./-]+|constraints\.txt|pyproject\.toml)", args):
                assert (REPO / path).exists(), f"{dockerfile}: {path} does not exist"
                assert not is_dockerignored(path), f"{dockerfile}: {path} is excluded by .dockerignore"


def test_dockerignore_keeps_secrets_and_local_state_out_of_images():
    for path in (".env", ".env.production", ".venv/bin/python", ".git/config", ".fraud_platform/lake/x.parquet"):
        assert is_dockerignored(path), path
    for path in ("pyproject.toml", "constraints.txt", "fraud_platform/settings.py", "spark_streaming/__init__.py",
                 "deploy/dagster.yaml", "deploy/workspace.docker.yaml", "docker/bake_spark_packages.py", "dbt/dbt_project.yml"):
        assert not is_dockerignored(path), path


def _module_path(module: str) -> list[Path]:
    base = REPO / Path(*module.split("."))
    return [base.with_suffix(".py"), base / "__init__.py"]


def _check_command(where: str, argv: list[str], mounts: dict[str, Path]) -> None:
    for i, token in enumerate(argv):
        if token == "-m" and i + 1 < len(argv):
            module = argv[i + 1]
            runs_module = argv[0] in ("python", "python3") or argv[0].endswith("/python")
            if runs_module:
                # `python -m package` needs package/__main__.py.
                candidates = [REPO / Path(*module.split(".")) / "__main__.py", REPO / Path(*module.split(".")).with_suffix(".py")]
            else:
                candidates = _module_path(module)
            assert any(path.is_file() for path in candidates), f"{where}: module {module} not found ({candidates[0]})"
        for path in re.findall(r"/opt/fraud_platform/([\w./-]+)", token):
            assert (REPO / path).is_file(), f"{where}: {token} -> {path} not in the repository"
        if token.startswith("/deploy/"):
            assert token in mounts, f"{where}: {token} is not mounted into the container"
            assert mounts[token].is_file(), f"{where}: {mounts[token]} missing"


def _bind_mounts(service: dict) -> dict[str, Path]:
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str) and volume.startswith("./"):
            source, target = volume.split(":")[:2]
            mounts[target] = (REPO / source).resolve()
    return mounts


def test_commands_reference_modules_and_files_that_exist(services):
    """`python -m spark_streaming` needs spark_streaming/__main__.py, `-m fraud_platform.definitions`
    the definitions module, mounted scripts their source file, /opt/fraud_platform/... a repo file."""
    for name, service in services.items():
        mounts = _bind_mounts(service)
        for key in ("command", "entrypoint"):
            argv = as_list(service.get(key))
            if argv[:2] == ["sh", "-c"] or argv[:2] == ["bash", "-c"]:
                for part in re.split(r"&&|;", argv[2]):
                    _check_command(f"{name}.{key}", part.split(), mounts)
            else:
                _check_command(f"{name}.{key}", argv, mounts)


@pytest.mark.parametrize("dockerfile", ["docker/dagster.Dockerfile", "spark_streaming/Dockerfile"])
def test_dockerfile_default_command_targets_exist(dockerfile):
    cmd = [args for keyword, args in dockerfile_instructions(REPO / dockerfile) if keyword == "CMD"][-1]
    _check_command(f"{dockerfile} CMD", json.loads(cmd), {})


def test_scorer_image_runs_the_scorer_package():
    cmd = [args for keyword, args in dockerfile_instructions(REPO / "spark_streaming/Dockerfile") if keyword == "CMD"][-1]
    assert json.loads(cmd) == ["python", "-m", "spark_streaming"]
    assert (REPO / "spark_streaming" / "__main__.py").is_file(), "spark_streaming/__main__.py (scorer entry point) missing"


def test_bind_mount_sources_exist_and_named_volumes_are_declared(compose, services):
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source")
            if source.startswith(("./", "/")):
                assert (REPO / source).exists(), f"{name}: bind mount source {source} missing"
            else:
                assert source in declared, f"{name}: named volume {source} not declared"
                used.add(source)
    assert declared == used, f"declared but unused volumes: {declared - used}"


def test_published_host_ports_are_unique_and_loopback_only(services):
    seen: dict[str, str] = {}
    for name, service in services.items():
        for port in service.get("ports", []):
            parts = str(port).split(":")
            assert len(parts) == 3 and parts[0] == "127.0.0.1", f"{name}: publish on 127.0.0.1 only, got {port}"
            host_port = parts[1]
            assert host_port not in seen, f"host port {host_port} used by {seen[host_port]} and {name}"
            seen[host_port] = name
    assert {"3000", "5000", "9090", "29092"} <= set(seen)


def test_depends_on_targets_and_conditions_are_consistent(services):
    for name, service in services.items():
        for target, spec in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown service {target}"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target} to be healthy; it has no healthcheck"
            if condition == "service_completed_successfully":
                assert target in ONE_SHOT_SERVICES, f"{target} is not a one-shot job"
    for job in ONE_SHOT_SERVICES:
        assert services[job]["restart"] == "no", job
    for name, service in services.items():
        if name not in ONE_SHOT_SERVICES:
            assert "healthcheck" in service, f"long-running service {name} has no healthcheck"


def test_platform_containers_run_in_docker_mode(services):
    for name in PLATFORM_SERVICES:
        assert environment(services[name]).get("FRAUD_PLATFORM_ENV") == "docker", name


# ----------------------------------------------------------------------------- cross-file wiring
def test_dagster_processes_share_the_grpc_workspace(services):
    workspace = yaml.safe_load((DEPLOY / "workspace.docker.yaml").read_text())
    [entry] = workspace["load_from"]
    grpc = entry["grpc_server"]
    code = as_list(services["dagster-code"]["command"])
    assert grpc["host"] == "dagster-code"
    assert str(grpc["port"]) == code[code.index("-p") + 1]
    assert code[code.index("-m") + 1] == "fraud_platform.definitions"
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert grpc["location_name"] == pyproject["tool"]["dagster"]["code_location_name"]
    assert code[code.index("--location-name") + 1] == grpc["location_name"]
    for name in ("dagster-webserver", "dagster-daemon"):
        argv = as_list(services[name]["command"])
        assert argv[argv.index("-w") + 1] == "/opt/fraud_platform/deploy/workspace.docker.yaml", name


def test_dagster_containers_use_the_production_instance(services):
    """The image installs deploy/dagster.yaml as $DAGSTER_HOME/dagster.yaml, and every Dagster
    container gets the DAGSTER_POSTGRES_* vars that file reads."""
    dockerfile = (REPO / "docker/dagster.Dockerfile").read_text()
    assert 'cp deploy/dagster.yaml "$DAGSTER_HOME/dagster.yaml"' in dockerfile
    needed = dagster_yaml_env_vars()
    assert {"DAGSTER_POSTGRES_HOST", "DAGSTER_POSTGRES_PASSWORD"} <= needed
    for name in ("dagster-init", "dagster-code", "dagster-webserver", "dagster-daemon"):
        assert needed <= set(environment(services[name])), name
    init = " ".join(as_list(services["dagster-init"]["command"]))
    assert "dagster instance migrate" in init and "deploy/apply_pool_limits.py" in init


def test_postgres_init_creates_every_database_the_stack_uses(services):
    created = set(re.findall(r"CREATE DATABASE (\w+);", (DEPLOY / "postgres/init-databases.sql").read_text()))
    dagster = environment(services["dagster-code"])
    used = {
        dagster["DAGSTER_POSTGRES_DB"],
        dagster["FRAUD_WAREHOUSE_PG_DATABASE"],
        environment(services["mlflow"])["MLFLOW_BACKEND_STORE_URI"].rsplit("/", 1)[1],
        environment(services["scorer"])["FRAUD_ALERTS_POSTGRES_DSN"].rsplit("/", 1)[1],
    }
    assert used <= created, used - created
    healthcheck = " ".join(services["postgres"]["healthcheck"]["test"])
    assert re.search(r"-d (\w+)", healthcheck).group(1) in created
    mounted = [v for v in services["postgres"]["volumes"] if "docker-entrypoint-initdb.d" in v]
    assert mounted and mounted[0].startswith("./deploy/postgres/init-databases.sql:")


def test_buckets_and_credentials_are_wired_between_minio_mlflow_and_platform(services):
    init = environment(services["minio-init"])
    platform = environment(services["dagster-code"])
    mlflow = environment(services["mlflow"])
    assert platform["FRAUD_LAKE_S3_BUCKET"] == init["FRAUD_LAKE_S3_BUCKET"]
    assert mlflow["MLFLOW_ARTIFACTS_DESTINATION"].startswith(f"s3://{init['MLFLOW_ARTIFACTS_BUCKET']}/")
    # Platform and MLflow use the scoped account minio-init creates, never the MinIO root account.
    for env in (platform, mlflow):
        assert env["AWS_ACCESS_KEY_ID"] == init["FRAUD_S3_ACCESS_KEY"] != init["MINIO_ROOT_USER"]
        assert env["AWS_SECRET_ACCESS_KEY"] == init["FRAUD_S3_SECRET_KEY"]
    assert "MINIO_ROOT_PASSWORD" not in platform and "MINIO_ROOT_PASSWORD" not in mlflow
    allowed_hosts = mlflow["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    assert "mlflow:5000" in allowed_hosts and platform["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"


def test_prometheus_scrapes_the_scorer_metrics_port(services):
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: [t for static in job["static_configs"] for t in static["targets"]]
        for job in config["scrape_configs"]
    }
    port = environment(services["scorer"])["FRAUD_STREAM_METRICS_PORT"]
    assert f"scorer:{port}" in targets["fraud-scorer"]
    assert f":{port}" in " ".join(services["scorer"]["healthcheck"]["test"])
    mounted = [v for v in services["prometheus"]["volumes"] if v.endswith(":/etc/prometheus/prometheus.yml:ro")]
    assert mounted == ["./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro"]
    assert f"EXPOSE {port}" in (REPO / "spark_streaming/Dockerfile").read_text()


def test_spark_versions_match_the_pinned_pyspark():
    """Driver (pyspark), cluster image, and Kafka connector must be the same Spark version."""
    pinned = re.search(r"^pyspark==([\d.]+)$", (REPO / "constraints.txt").read_text(), re.MULTILINE).group(1)
    assert parse_env_file()["SPARK_VERSION"] == pinned
    for default in re.findall(r"\$\{SPARK_VERSION:-([\d.]+)\}", COMPOSE_FILE.read_text()):
        assert default == pinned
    arg = re.search(r"^ARG SPARK_VERSION=([\d.]+)$", (REPO / "spark_streaming/Dockerfile").read_text(), re.MULTILINE)
    assert arg.group(1) == pinned
    services = load_compose()["services"]
    assert services["spark-master"]["image"] == f"apache/spark:{pinned}"
    assert services["scorer"]["build"]["args"]["SPARK_VERSION"] == pinned


KAFKA_NODES = ("kafka", "kafka-2", "kafka-3")
KAFKA_BOOTSTRAP = "kafka:9092,kafka-2:9092,kafka-3:9092"


@pytest.mark.parametrize("name", KAFKA_NODES)
def test_kafka_listeners_are_consistent(name):
    services = load_compose()["services"]
    kafka = services[name]["environment"]
    listeners = dict(item.split("://") for item in kafka["KAFKA_LISTENERS"].split(","))
    advertised = dict(item.split("://") for item in kafka["KAFKA_ADVERTISED_LISTENERS"].split(","))
    protocols = dict(item.split(":") for item in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners) == set(protocols)
    assert set(advertised) <= set(listeners) and "CONTROLLER" not in advertised
    assert advertised["PLAINTEXT"] == f"{name}:9092" and services[name]["hostname"] == name
    host_port = advertised["HOST"].split(":")[1]
    assert f"127.0.0.1:{host_port}:{listeners['HOST'].lstrip(':')}" in services[name]["ports"]
    voters = kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert voters == [f"{i}@{node}:{listeners['CONTROLLER'].lstrip(':')}" for i, node in enumerate(KAFKA_NODES, start=1)]
    assert f"{kafka['KAFKA_NODE_ID']}@{name}:" in kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", kafka["CLUSTER_ID"]), "KRaft cluster id must be a base64 UUID"


def test_kafka_is_a_three_node_kraft_cluster_with_replicated_topics():
    """Three brokers, each also a controller, one cluster id, own data volume; replicated 3 ways
    with min.insync.replicas 2 (internal topics too), so one node may fail without losing acks."""
    services = load_compose()["services"]
    nodes = [services[name] for name in KAFKA_NODES]
    assert len({n["environment"]["KAFKA_NODE_ID"] for n in nodes}) == 3
    assert len({n["environment"]["CLUSTER_ID"] for n in nodes}) == 1
    assert len({n["volumes"][0].split(":")[0] for n in nodes}) == 3
    assert all(n["image"] == nodes[0]["image"] and n["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller" for n in nodes)
    for node in nodes:
        env = node["environment"]
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2"
        assert env["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false"
    init = services["kafka-init"]
    assert set(init["depends_on"]) >= set(KAFKA_NODES)
    assert all(init["depends_on"][n]["condition"] == "service_healthy" for n in KAFKA_NODES)
    assert (init["environment"]["FRAUD_TOPIC_REPLICATION_FACTOR"], init["environment"]["FRAUD_TOPIC_MIN_INSYNC_REPLICAS"]) == ("3", "2")


def test_every_kafka_client_names_all_three_brokers(services):
    """Every container that runs platform code (and kafka-init) bootstraps from the three nodes,
    so losing any one broker does not cut a client off."""
    clients = {name: environment(s) for name, s in services.items() if "FRAUD_KAFKA_BOOTSTRAP_SERVERS" in environment(s)}
    assert {"dagster-code", "scorer"} <= set(clients)
    for name, env in clients.items():
        assert env["FRAUD_KAFKA_BOOTSTRAP_SERVERS"] == KAFKA_BOOTSTRAP, name
        assert (env["FRAUD_TOPIC_REPLICATION_FACTOR"], env["FRAUD_TOPIC_MIN_INSYNC_REPLICAS"]) == ("3", "2"), name
    assert environment(services["kafka-init"])["KAFKA_BOOTSTRAP"] == KAFKA_BOOTSTRAP


def test_secrets_reach_only_the_containers_that_use_them(services):
    """User code runs only in dagster-code (and its Spark executors) and the scorer; the Dagster
    webserver, daemon and init job get the instance database and nothing else."""
    platform_secrets = {"FRAUD_TOKENISATION_KEY", "AWS_SECRET_ACCESS_KEY", "FRAUD_KAFKA_SASL_PASSWORD", "FRAUD_WAREHOUSE_PG_PASSWORD"}
    for name in ("dagster-webserver", "dagster-daemon", "dagster-init"):
        env = environment(services[name])
        assert not platform_secrets & set(env), name
        assert set(env) == dagster_yaml_env_vars() | {"FRAUD_PLATFORM_ENV"}, name
    for name in ("dagster-code", "spark-worker", "scorer"):
        assert "FRAUD_TOKENISATION_KEY" in environment(services[name]), name
    for name, service in services.items():
        if name not in ("minio", "minio-init"):
            assert not {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"} & set(environment(service)), name


@pytest.mark.parametrize("dockerfile", ["docker/dagster.Dockerfile", "spark_streaming/Dockerfile"])
def test_images_install_the_platform_where_its_repository_paths_resolve(dockerfile):
    """fraud_platform finds dbt/ and deploy/ next to its package (DBT_PROJECT_DIR); installed
    into site-packages, "../dbt" would be dbt-core itself. The images install it editable from
    the copied repository, and the dbt project folder is writable by the runtime user."""
    from fraud_platform.warehouse import DBT_PROJECT_DIR

    assert DBT_PROJECT_DIR == REPO / "dbt"
    runs = " ".join(args for keyword, args in dockerfile_instructions(REPO / dockerfile) if keyword == "RUN")
    assert "pip install -c constraints.txt -e ." in runs
    assert "COPY . /opt/fraud_platform" in (REPO / dockerfile).read_text()
    if dockerfile == "docker/dagster.Dockerfile":
        assert re.search(r"chown -R fraud:fraud [^&]*/opt/fraud_platform/dbt", runs)
