"""Version reads written once: the SQL of a listing page and of a reference's resolution, and one
row-to-document mapper, run through a driver (a bare sqlite3 connection, or the server's
SQLAlchemy session on SQLite and PostgreSQL).

The documents are what `/v1` and `adapters ... --json` print (VersionSummary's JSON, a pull's
files): the services validate them into the entities; the embedded CLI prints them as they are,
without importing SQLAlchemy or the entities (bench/cli_startup.py).

    from registry.reads import list_versions, resolve_files, SqliteDriver, open_at_head
    from registry.reads.session import SessionDriver   # the server's (imports SQLAlchemy)
"""

from __future__ import annotations

from registry.reads.driver import Driver, SqliteDriver, open_at_head
from registry.reads.paging import check_limit, parse_cursor
from registry.reads.versions import (
    Listing,
    find_version,
    list_versions,
    resolve_files,
    summaries,
    version_files,
)

__all__ = [
    "Driver",
    "Listing",
    "SqliteDriver",
    "check_limit",
    "find_version",
    "list_versions",
    "open_at_head",
    "parse_cursor",
    "resolve_files",
    "summaries",
    "version_files",
]
