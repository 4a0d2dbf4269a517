"""What `adapters list`, `pull` and `show` read, as plain documents, behind the client.

`open_reads` gives the CLI a VersionReads for its mode:
- a server (ADAPTERS_URL): ClientReads over HttpClient (`/v1/versions`, `/v1/resolve`);
- the embedded registry: EmbeddedReads, which runs registry.reads on a bare sqlite3 connection
  when the database file exists at this code's head revision, else goes through LocalClient
  (which creates, migrates or refuses the database; PostgreSQL too). Both run the same SQL and the
  same mapper, so they print the same JSON (tests/cli/test_read_model.py).

Why documents and a bare connection: a read on the embedded default spent 0.55 s importing
SQLAlchemy's ORM, the models and the entities before its one query (bench/cli_startup.py). This
module imports neither at start-up: the entities are imported only to validate a filter value
that is not plain text, and by the full client when it is needed. The embedded reads act as the
operator (whoever holds the database), as LocalClient does.

Pulls go through the client's RefCache (registry.client.ref_cache): a number or a digest resolved
once starts later pulls without a query; `pull_ref` says what happens when the registry no
longer gives the blobs of a cached version.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from registry import reads
from registry.client.ref_cache import RefCache
from registry.client.resolved import Resolved
from registry.client.transfer import BlobSource, StoreBlobs, write_files
from registry.errors import Forbidden, NotFound
from registry.reads.version import version_doc
from registry.refs import parse_ref

if TYPE_CHECKING:
    from registry.client.interface import RegistryClient, TransferProgress
    from registry.config import Settings

_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/+-]{0,127}")
"""Filter values taken as they are: text VersionFilter's validators accept unchanged (a Label is
at most 128 characters, a Name 256). Anything else is validated by VersionFilter itself."""
_PEFT_TYPE = re.compile(r"[A-Za-z0-9_]{1,32}")


class VersionReads(Protocol):
    def list_versions(self, query: dict[str, Any], limit: int, cursor: str | None) -> dict[str, Any]:
        """A Page of VersionSummary's JSON document; `query` holds VersionFilter's fields."""
        ...

    def resolve_files(self, ref: str, use_cache: bool = True) -> Resolved: ...

    def show(self, ref: str) -> dict[str, Any]:
        """VersionInfo's JSON document of the version `ref` names (never cached: its evals,
        aliases, checks and signatures change)."""
        ...

    def blobs(self) -> BlobSource:
        """Where a pull's blobs come from (the local cache first)."""
        ...


def open_reads(settings: Settings, client: Callable[[], RegistryClient]) -> VersionReads:
    """The reads of this mode; `client` opens the full client (only when it is needed)."""
    if settings.url:
        return ClientReads(client())
    return EmbeddedReads(settings, client)


class ClientReads:
    """The reads through a full client (HttpClient; LocalClient where the bare path cannot answer)."""

    def __init__(self, client: RegistryClient) -> None:
        self.client = client

    def list_versions(self, query: dict[str, Any], limit: int, cursor: str | None) -> dict[str, Any]:
        from registry.entities import VersionFilter

        page = self.client.list_versions(VersionFilter(**query), limit, cursor)
        return page.model_dump(mode="json")

    def resolve_files(self, ref: str, use_cache: bool = True) -> Resolved:
        return self.client.resolve_files(ref, use_cache)

    def show(self, ref: str) -> dict[str, Any]:
        return self.client.resolve(ref).model_dump(mode="json")

    def blobs(self) -> BlobSource:
        return self.client


def embedded_address(settings: Settings) -> str | None:
    """The embedded registry's RefCache address: its database URL, for a SQLite file the file's
    absolute path and inode (a database removed and created again numbers from 1 again); None
    while the file does not exist."""
    db = settings.sqlite_file
    if db is None:
        return settings.effective_database_url
    try:
        inode = db.stat().st_ino
    except OSError:
        return None
    return f"sqlite:///{db.absolute()}#{inode}"


class EmbeddedReads:
    """The embedded registry's reads: on a bare sqlite3 connection when the file is at head, else
    through LocalClient (opened by `client`)."""

    def __init__(self, settings: Settings, client: Callable[[], RegistryClient]) -> None:
        self.settings = settings
        self._client = client
        self._full: ClientReads | None = None
        self._bare_blobs: BlobSource | None = None

    def full(self) -> ClientReads:
        if self._full is None:
            self._full = ClientReads(self._client())
        return self._full

    def _open(self) -> sqlite3.Connection | None:
        """The database file at head on a bare connection, or None: the full client answers."""
        db = self.settings.sqlite_file
        return None if db is None or self._full is not None else reads.open_at_head(db)

    def list_versions(self, query: dict[str, Any], limit: int, cursor: str | None) -> dict[str, Any]:
        conn = self._open()
        if conn is None:
            return self.full().list_versions(query, limit, cursor)
        try:
            return reads.list_versions(
                reads.SqliteDriver(conn), _listing(query), limit, cursor, readable=None
            )
        finally:
            conn.close()

    def resolve_files(self, ref: str, use_cache: bool = True) -> Resolved:
        parsed = parse_ref(ref)
        address = embedded_address(self.settings)

        def fetch() -> Resolved:
            conn = self._open()
            if conn is None:
                return self.full().resolve_files(ref, use_cache=False)
            try:
                return Resolved.from_doc(reads.resolve_files(reads.SqliteDriver(conn), parsed))
            finally:
                conn.close()

        if address is None:  # no database yet: nothing to remember it by (the client creates it)
            return fetch()
        return RefCache(self.settings.effective_cache_dir, address).resolve(parsed, fetch, use_cache)

    def show(self, ref: str) -> dict[str, Any]:
        parsed = parse_ref(ref)
        conn = self._open()
        if conn is None:
            return self.full().show(ref)
        try:
            driver = reads.SqliteDriver(conn)
            vid, _, _ = reads.find_version(driver, parsed)
            return version_doc(driver, vid, readable=None)
        finally:
            conn.close()

    def blobs(self) -> BlobSource:
        if self._full is not None:
            return self._full.blobs()
        if self._bare_blobs is None:
            self._bare_blobs = self._store_blobs()
        return self._bare_blobs

    def _store_blobs(self) -> StoreBlobs:
        """The registry's store and this machine's cache, read as the operator (who may read every
        blob), as LocalClient.fetch_blob does after its check."""
        from storage import open_store
        from storage.local import local_cache

        store = open_store(self.settings.effective_blob_url, self.settings.s3_options())
        return StoreBlobs(store, local_cache(store, self.settings.effective_cache_dir))


def _listing(query: dict[str, Any]) -> reads.Listing:
    """VersionFilter's fields as it accepts them: plain text as it is; anything else through
    VersionFilter (which refuses it, or says what it becomes), as the full path would."""
    text = [query.get(k) for k in ("repo", "task", "base")]
    peft_type = query.get("peft_type")
    if all(v is None or _PLAIN.fullmatch(v) for v in text) and (
        peft_type is None or _PEFT_TYPE.fullmatch(peft_type)
    ):
        return reads.Listing(**query)
    from registry.entities import VersionFilter

    return reads.Listing(**VersionFilter(**query).model_dump())


def pull_ref(
    source: VersionReads,
    ref: str,
    out: Path | None = None,
    *,
    force: bool = False,
    progress: TransferProgress | None = None,
) -> tuple[Resolved, Path]:
    """Resolve `ref` (from the RefCache when it holds it) and write its files into `out` (default
    ./NAME) through registry.client.transfer.write_files. When the version came from the cache and
    the registry no longer gives one of its blobs (deleted, swept, or no longer readable), the
    entry is not trusted: `ref` is resolved again and the pull says what the registry says."""
    found = source.resolve_files(ref)
    try:
        return found, _write(source, found, out, force, progress)
    except (NotFound, Forbidden):
        if not found.cached:
            raise
    found = source.resolve_files(ref, use_cache=False)
    return found, _write(source, found, out, force, progress)


def _write(
    source: VersionReads, found: Resolved, out: Path | None, force: bool, progress: TransferProgress | None
) -> Path:
    target = out or Path.cwd() / found.repo.split("/")[1]
    return write_files(source.blobs(), found.files, target, force=force, progress=progress)
