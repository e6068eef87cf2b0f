"""Apply the Dagster concurrency pool limits declared in deploy/concurrency_pools.yaml.

Dagster keeps per-pool limits in the instance's event-log storage (dagster.yaml only has
``concurrency.pools.default_limit``), so they are set by this one-shot step: the compose service
``dagster-init`` runs it against the Postgres instance, and the local scripts can run it against
the SQLite instance of ``dagster dev``. Idempotent.

Usage: python deploy/apply_pool_limits.py [--file deploy/concurrency_pools.yaml]
(uses the instance in $DAGSTER_HOME)
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

import yaml

DEFAULT_POOLS_FILE = Path(__file__).resolve().with_name("concurrency_pools.yaml")


def load_pool_limits(path: Path = DEFAULT_POOLS_FILE) -> dict[str, int]:
    """Pool name -> slot limit, validated (non-empty names, integer limits >= 0)."""
    document = yaml.safe_load(Path(path).read_text()) or {}
    pools = document.get("pools")
    if not isinstance(pools, Mapping) or not pools:
        raise ValueError(f"{path}: expected a non-empty 'pools' mapping of pool name -> limit")
    limits: dict[str, int] = {}
    for name, limit in pools.items():
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{path}: invalid pool name {name!r}")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"{path}: pool {name!r} needs an integer limit >= 0, got {limit!r}")
        limits[name] = limit
    return limits


def apply_pool_limits(instance, limits: Mapping[str, int]) -> dict[str, int]:
    """Set each pool's slot count on the instance; returns the limits read back from storage."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        raise RuntimeError(f"{type(storage).__name__} does not support concurrency pools")
    for pool, limit in limits.items():
        storage.set_concurrency_slots(pool, limit)
    return {pool: storage.get_concurrency_info(pool).slot_count for pool in limits}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=DEFAULT_POOLS_FILE)
    args = parser.parse_args(argv)

    from dagster import DagsterInstance

    limits = load_pool_limits(args.file)
    with DagsterInstance.get() as instance:
        applied = apply_pool_limits(instance, limits)
    for pool, slots in sorted(applied.items()):
        print(f"pool {pool}: limit {slots}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
