"""What every service call needs: a session factory, a blob store and the limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from registry.config import Settings
from registry.db.engine import make_engine, session_factory, upgrade_if_needed
from registry.formats.inspect import Limits
from registry.services.downloads import DownloadCounter
from registry.services.lru import Lru
from storage import BlobStore, open_store


@dataclass
class Registry:
    """The wiring of one registry: database, blob store and limits. Built once, passed down."""

    engine: Engine
    sessions: sessionmaker[Session]
    store: BlobStore
    limits: Limits
    cache: dict[Any, Any] = field(default_factory=dict)
    """Facts that never change once written (a base's module keys), kept per process."""
    downloads: DownloadCounter = field(default_factory=DownloadCounter)
    """Hub downloads counted by this process and not yet written (services/downloads.py)."""
    hub_revisions: Lru[tuple[str, str], dict[str, Any]] = field(default_factory=lambda: Lru(4096))
    """Immutable Hub revisions (a number, a commit id) -> the version they name (services/hub_files.py)."""
    hub_files: Lru[tuple[int, str], Any] = field(default_factory=lambda: Lru(100_000, weight=len))
    """(version id, digest) -> the version's file table, for Hub file requests (services/hub_files.py).
    Bounded by files, not versions (a version may list 10,000): 100,000 files took 37 MB
    (tracemalloc, 45-character paths)."""
    hub_bases: Lru[str, Any] = field(default_factory=lambda: Lru(10_000, weight=lambda b: len(b.files)))
    """Uploaded bases' Hub commit, files and revisions by name (services/hub_files.py), by files too."""

    @classmethod
    def from_settings(cls, settings: Settings, migrate: bool = False) -> Registry:
        engine = make_engine(settings.effective_database_url)
        if migrate:
            upgrade_if_needed(engine)  # one query when already at head; Alembic only to migrate
        store = open_store(settings.effective_blob_url, settings.s3_options())
        limits = Limits(
            max_total_bytes=settings.max_push_bytes,
            max_header_bytes=settings.max_header_bytes,
            max_json_bytes=settings.max_json_bytes,
        )
        return cls(engine, session_factory(engine), store, limits)

    def close(self) -> None:
        self.engine.dispose()
