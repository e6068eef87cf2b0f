"""Helpers shared by the deployment tests: load docker-compose.yml the way Compose does
(YAML anchors/merge keys, then ${VAR} interpolation from an env file), and find which env vars
the platform's code actually reads."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERIGNORE = REPO / ".dockerignore"
DEPLOY = REPO / "deploy"

# Compose interpolation: $$ (escaped dollar), ${NAME}, ${NAME<op>arg} with op in :- - :? ? :+ +,
# and bare $NAME.
_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(KeyError):
    """A ${NAME:?message} / ${NAME?message} variable that is not set."""


def load_raw_compose() -> dict[str, Any]:
    """The compose file as YAML (anchors and << merge keys resolved), before interpolation."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


def parse_env_file(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    """Active KEY=VALUE lines of a Compose env file (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        assert sep, f"{path.name}: not a KEY=VALUE line: {line!r}"
        values[key.strip()] = value.strip()
    return values


def mentioned_in_env_file(path: Path = ENV_EXAMPLE) -> set[str]:
    """Every variable name the env file declares, active or as a commented-out reference line."""
    return set(re.findall(r"^\s*#?\s*([A-Z][A-Z0-9_]*)=", path.read_text(), flags=re.MULTILINE))


def interpolate_string(value: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("braced") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        present = name in env
        non_empty = present and env[name] != ""
        if op is None:
            return env.get(name, "")
        if op == ":-":
            return env[name] if non_empty else arg
        if op == "-":
            return env[name] if present else arg
        if op == ":?":
            if not non_empty:
                raise MissingVariable(f"{name}: {arg}")
            return env[name]
        if op == "?":
            if not present:
                raise MissingVariable(f"{name}: {arg}")
            return env[name]
        if op == ":+":
            return arg if non_empty else ""
        if op == "+":
            return arg if present else ""
        raise AssertionError(op)

    return _INTERPOLATION.sub(replace, value)


def interpolate(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate_string(node, env)
    if isinstance(node, list):
        return [interpolate(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    return node


def load_compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The compose model as `docker compose config` would see it with .env = .env.example."""
    return interpolate(load_raw_compose(), parse_env_file() if env is None else env)


def iter_strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from iter_strings(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from iter_strings(key)
            yield from iter_strings(value)


def referenced_variables(node: Any) -> dict[str, set[str]]:
    """Variable name -> the interpolation operators it is used with ('' for plain ${NAME})."""
    found: dict[str, set[str]] = {}
    for text in iter_strings(node):
        for match in _INTERPOLATION.finditer(text):
            if match.group("escaped"):
                continue
            name = match.group("braced") or match.group("bare")
            found.setdefault(name, set()).add(match.group("op") or "")
    return found


def as_list(command: Any) -> list[str]:
    if command is None:
        return []
    if isinstance(command, str):
        return command.split()
    return [str(part) for part in command]


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


# --------------------------------------------------------------------- env vars read by the code
_QUOTED_FRAUD_NAME = re.compile(r"""["'](FRAUD_[A-Z0-9_]+)["']""")
_ENV_READ_CALL = re.compile(
    r"""(?:_env|os\.environ\.get|os\.getenv|environ\.get|env_var)\(\s*["']([A-Z][A-Z0-9_]*)["']"""
)
# os.environ["NAME"] as a read (an assignment os.environ["NAME"] = ... only sets it).
_ENV_SUBSCRIPT = re.compile(r"""os\.environ\[\s*["']([A-Z][A-Z0-9_]*)["']\s*\](?!\s*=[^=])""")

# fraud_platform/settings.py names variables as keyword arguments: _env_values(tracking_uri="MLFLOW_TRACKING_URI").
_SETTINGS_ENV_KEYWORD = re.compile(r"""\b[a-z][a-z0-9_]*=["']([A-Z][A-Z0-9_]*)["']""")

CODE_ROOTS = ("fraud_platform", "spark_streaming")


def env_vars_read_by_code() -> dict[str, list[str]]:
    """Env var name -> files that read it, across the platform packages and dbt profiles."""
    found: dict[str, list[str]] = {}
    files = [p for root in CODE_ROOTS for p in sorted((REPO / root).rglob("*.py"))]
    files += sorted((REPO / "dbt").glob("profiles.yml"))
    for path in files:
        text = path.read_text()
        names = set(_QUOTED_FRAUD_NAME.findall(text)) | set(_ENV_READ_CALL.findall(text)) | set(_ENV_SUBSCRIPT.findall(text))
        if path.name == "settings.py":
            names |= set(_SETTINGS_ENV_KEYWORD.findall(text))
        for name in names:
            found.setdefault(name, []).append(str(path.relative_to(REPO)))
    return found


def dagster_yaml_env_vars(path: Path = DEPLOY / "dagster.yaml") -> set[str]:
    """Names used as `env: NAME` sources in a dagster.yaml."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if set(node) == {"env"} and isinstance(node["env"], str):
                names.add(node["env"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(yaml.safe_load(path.read_text()))
    return names


# --------------------------------------------------------------------- Dockerfiles, .dockerignore
def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    buffer = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        keyword, _, rest = buffer.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        buffer = ""
    return instructions


def dockerignore_patterns() -> list[tuple[bool, str]]:
    """(negated, pattern) in file order."""
    patterns = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        patterns.append((negated, line.lstrip("!").strip("/")))
    return patterns


def _glob_to_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += r"(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += r".*"
            i += 2
        elif pattern[i] == "*":
            out += r"[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += r"[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"$")


def is_dockerignored(relative_path: str) -> bool:
    """Whether .dockerignore excludes this path (or one of its parent folders) from the context."""
    parts = relative_path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for negated, pattern in dockerignore_patterns():
        regex = _glob_to_regex(pattern)
        if any(regex.match(candidate) for candidate in candidates):
            ignored = not negated
    return ignored
