"""Statements on the decision log's own database (its SQLite file or Postgres connection), for the
tables that live beside it: the console's verdicts and audit trail, the challenger's shadow scores.

One place knows the two backends' differences: ``?`` placeholders become ``%s`` for Postgres, and
Postgres statements run under the backend's connection lock.
"""

from __future__ import annotations

from typing import Any

from fraud_platform.infra.decision_log import PostgresBackend, create_tables_locked


def is_postgres(backend: Any) -> bool:
    return isinstance(backend, PostgresBackend)


def create_table(backend: Any, table: str, sql: str) -> None:
    """``CREATE TABLE IF NOT EXISTS`` of a table beside the decision log; on Postgres under the same
    advisory lock the decision log's own table takes (``create_tables_locked``), so API workers
    starting together do not collide in the catalog."""
    if is_postgres(backend):
        with backend._lock:
            create_tables_locked(backend._conn(), table, sql)
    else:
        execute(backend, sql)


def execute(backend: Any, sql: str, params: tuple = (), fetch: bool = False, many: list[tuple] | None = None) -> list[tuple]:
    """Run one statement (``?`` placeholders); ``many`` runs it once per parameter tuple."""
    if is_postgres(backend):
        sql = sql.replace("?", "%s")
        with backend._lock:
            conn = backend._conn()
            if many is not None:
                with conn.transaction(), conn.cursor() as cursor:
                    cursor.executemany(sql, many)
                return []
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if fetch else []
    conn = backend._conn()
    if many is not None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(sql, many)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return []
    cursor = conn.execute(sql, params)
    return cursor.fetchall() if fetch else []
