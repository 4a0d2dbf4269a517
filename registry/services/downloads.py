"""Download counts per Hub repository, kept off the resolve path.

A download is counted as the Hub counts one for these libraries: a request for the file its clients
fetch once per load, `adapter_config.json` for an adapter repository (PEFT's query file on the Hub)
and `config.json` for a model. Only a GET counts (a transfer, or a presigned redirect to one): the
HEAD a warm huggingface_hub cache sends to check freshness does not, so a fresh `snapshot_download`
or `from_pretrained` counts once. The count is "all time" (the Hub's `downloads` is 30 days).

The resolve route only increments a per-process counter under a lock (no query, no I/O); the server
adds the pending counts to the database every FLUSH_S seconds and when it stops, in one transaction
(`flush`). Reads (`model_info`, `list_models`) show the stored count plus this process's pending one,
so a replica sees its own downloads at once and the others' within FLUSH_S.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import literal, select
from sqlalchemy.orm import Session, sessionmaker

from registry.db import models as m
from registry.db.engine import unit_of_work

log = logging.getLogger("registry.downloads")

DownloadKey = tuple[str, int | str]
"""("repo", repositories.id) for an adapter repository; ("base", base_names.name) for a model."""
COUNTED_FILES = {"adapter": "adapter_config.json", "model": "config.json"}
"""The file whose GET counts as one download, by the kind of Hub repository."""
FLUSH_S = 10.0
"""How often a server writes its pending counts: another replica shows them at most this late."""


class DownloadCounter:
    """Pending download counts of one process. `add` is what the resolve path pays: a dict
    increment under a lock. The keys are repositories that exist (a download was served), so the
    table stays as small as the registry."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[DownloadKey, int] = {}

    def add(self, key: DownloadKey) -> None:
        with self._lock:
            self._pending[key] = self._pending.get(key, 0) + 1

    def pending(self, key: DownloadKey) -> int:
        with self._lock:
            return self._pending.get(key, 0)

    def take(self) -> dict[DownloadKey, int]:
        with self._lock:
            taken, self._pending = self._pending, {}
        return taken

    def restore(self, counts: dict[DownloadKey, int]) -> None:
        """Put back counts a failed flush took (the next flush tries again)."""
        with self._lock:
            for key, n in counts.items():
                self._pending[key] = self._pending.get(key, 0) + n

    def flush(self, sessions: sessionmaker[Session]) -> int:
        """Add the pending counts to the database in one transaction; how many downloads. A
        database that fails keeps them pending (logged): a count never fails a request. A
        repository deleted meanwhile takes its count with it (the insert selects its row)."""
        counts = self.take()
        if not counts:
            return 0
        try:
            with unit_of_work(sessions) as session:
                for key, n in sorted(counts.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
                    _add(session, key, n)
        except Exception as err:
            log.warning("could not record %d downloads (kept for the next try): %s", len(counts), err)
            self.restore(counts)
            return 0
        return sum(counts.values())


def _add(session: Session, key: DownloadKey, n: int) -> None:
    """INSERT ... SELECT the repository's (or base name's) row ... ON CONFLICT add: one statement,
    no read-then-write race between replicas, and nothing inserted for a row that is gone."""
    table = m.HubDownloads
    column = "repository_id" if key[0] == "repo" else "base_name"
    source = m.Repository.id if key[0] == "repo" else m.BaseName.name
    rows = select(source, literal(n)).where(source == key[1])
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        pg = pg_insert(table).from_select([column, "downloads"], rows)
        session.execute(
            pg.on_conflict_do_update(
                index_elements=[column], set_={"downloads": table.downloads + pg.excluded.downloads}
            )
        )
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        lite = sqlite_insert(table).from_select([column, "downloads"], rows)
        session.execute(
            lite.on_conflict_do_update(
                index_elements=[column], set_={"downloads": table.downloads + lite.excluded.downloads}
            )
        )


def stored(session: Session, key: DownloadKey) -> int:
    """The recorded count of `key` (0: none yet). Listings join the table instead."""
    table = m.HubDownloads
    column = table.repository_id if key[0] == "repo" else table.base_name
    return session.scalar(select(table.downloads).where(column == key[1])) or 0
