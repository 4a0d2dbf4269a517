"""Where the embedded registry lives, by the rules of registry.config.Settings, without pydantic.

Settings (pydantic-settings) is the one place settings are read and validated; importing it costs
about 0.2 s. The embedded quick reads (registry.services.quick) only need the database's path and
the blob directory, and only take them from here when the environment sets nothing Settings could
refuse or that would send the command elsewhere: then both read the same files
(tests/cli/test_quick_reads.py checks that every Settings field either agrees or sends the command
down the full path)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

ENV_PREFIX = "adapters_"
QUICK_SAFE_SETTINGS = frozenset(
    {"home", "database_url", "blob_url", "url", "user", "cache_dir", "config_dir", "token"}
)
"""Settings a quick read may see set: they are free text that Settings takes as given (no
validator can refuse them) and, but for those it reads, do not change what a read answers.
`url` only when empty (set, it names a server); `blob_url` only as a file:// URL (an s3:// one
needs the S3 settings, and the full path refuses it without them)."""
IGNORED_ENV = frozenset({"debug"})
"""ADAPTERS_* variables that are not Settings fields (ADAPTERS_DEBUG: the CLI's tracebacks)."""


def default_home() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "adapter-registry"


def default_config_dir() -> Path:
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(xdg) / "adapter-registry"


@dataclass(frozen=True)
class EmbeddedPaths:
    database: Path
    """The SQLite file."""
    blobs: Path
    """The blob directory (file store)."""


def embedded_paths(environ: Mapping[str, str] | None = None) -> EmbeddedPaths | None:
    """The SQLite file and blob directory an embedded command would open, or None where Settings
    would decide more than that: a server URL, a database that is not a plain SQLite file, blobs
    that are not a local directory, or any other ADAPTERS_* setting (a value Settings might refuse
    with a clear error must still be refused).

    Variable names are case-insensitive, as pydantic-settings reads them."""
    env = {k.lower(): v for k, v in (os.environ if environ is None else environ).items()}
    given = {k.removeprefix(ENV_PREFIX): v for k, v in env.items() if k.startswith(ENV_PREFIX)}
    if any(k not in QUICK_SAFE_SETTINGS and k not in IGNORED_ENV for k in given):
        return None
    if given.get("url"):
        return None
    home = given.get("home")
    if home == "":
        return None
    root = Path(home) if home is not None else default_home()
    database = root / "registry.db"
    url = given.get("database_url")
    if url is not None:
        # sqlite:///relative or sqlite:////absolute; anything SQLAlchemy would decode or read as
        # an option (%, ?, #) or as no file (:memory:, empty) goes down the full path.
        rest = url.removeprefix("sqlite:///")
        if rest == url or not rest or rest == ":memory:" or any(c in rest for c in "%?#"):
            return None
        database = Path(rest)
    blobs = root / "blobs"
    blob_url = given.get("blob_url")
    if blob_url is not None:
        parsed = urlparse(blob_url)  # as storage.open_store reads it
        if parsed.scheme != "file" or not parsed.path:
            return None
        blobs = Path(parsed.path)
    return EmbeddedPaths(database, blobs)


def embedded_sqlite_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """`embedded_paths(environ).database`, or None."""
    paths = embedded_paths(environ)
    return None if paths is None else paths.database
