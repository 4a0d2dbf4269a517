"""Where the read SQL runs: a Driver takes SQL text with `:name` parameters (the style both
sqlite3 and SQLAlchemy's `text()` read) and gives back plain tuples.

Column values differ by database and are left to the mapper (registry.reads.documents): SQLite
gives DateTime columns as text and booleans as 0/1; PostgreSQL gives aware datetimes and bools.
JSON columns are selected `CAST(... AS TEXT)`, so both give JSON text."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from registry.db.revisions import head_revision


class Driver(Protocol):
    def rows(self, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]: ...


class SqliteDriver:
    """A bare sqlite3 connection (the embedded CLI's reads: no SQLAlchemy import)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def rows(self, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, dict(params)).fetchall()


def open_at_head(db: Path) -> sqlite3.Connection | None:
    """The existing database file in a read transaction (one snapshot for what follows), or None
    when there is no such file yet or its schema is not this code's head (the ORM path migrates
    or refuses). Opened without creating it (mode=rw: a reader of a WAL database may need to
    create its -shm file)."""
    if not db.is_file():
        return None
    try:
        conn = sqlite3.connect(
            f"file:{quote(str(db.absolute()))}?mode=rw", uri=True, timeout=30, isolation_level=None
        )
    except sqlite3.Error:
        return None
    conn.execute("PRAGMA busy_timeout=30000")  # registry.db.engine.SQLITE_BUSY_TIMEOUT_MS
    conn.execute("BEGIN")
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:  # never migrated
        row = None
    if row is None or row[0] != head_revision():
        conn.close()
        return None
    return conn
