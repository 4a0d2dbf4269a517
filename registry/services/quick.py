"""Quick reads of the embedded SQLite registry: `adapters list`, and what `adapters pull` needs to
know, through the standard library's sqlite3, without SQLAlchemy, pydantic or the entities.

Why a second way to list: a read on the embedded default spent 0.55 s importing SQLAlchemy's ORM,
the models, pydantic and the entities before its one query (bench/cli_startup.py; `adapters list
--json` took 0.76 s on an empty registry, 14x `python -c "import click, rich"`). This module answers
the same listing in about a third of that.

It answers only where its answer is the service's, and returns None everywhere else, so the caller
goes down the full path (registry.services.queries.list_versions through LocalClient), which stays
the one that refuses bad input, creates and migrates a database, and reads PostgreSQL or a server:
- the database file exists and is at this code's head revision (no migration to run);
- every filter, the limit and the cursor are plain values the full path would accept as they are;
- the embedded client reads as the operator, who may read every namespace.
tests/cli/test_quick_reads.py pins the two paths to the same JSON, byte for byte, on a registry with
every kind of row a summary shows (evals with history, aliases, linked bases, merges, deletions),
for every filter and page, and every form of reference to the same version and files."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from registry.bounds import PAGE_MAX, row_cursor
from registry.db.revisions import head_revision
from registry.errors import InvalidReference
from registry.formats.paths import SIGNATURE_NAME
from registry.refs import parse_ref, parse_repo

_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/+-]{0,127}")
"""Filter values (task, base) taken as they are: text VersionFilter's validators accept unchanged
(a Label is at most 128 characters, a Name 256). Anything else (empty, long, other characters)
goes down the full path, which refuses or answers."""
_PEFT_TYPE = re.compile(r"[A-Za-z0-9_]{1,32}")

_SUMMARY = """
SELECT v.id, r.namespace, r.name, v.number, v.digest, v.created_at, v.pushed_by, v.task,
       v.peft_type, v.task_type, v.r, v.lora_alpha, v.target_modules, v.lora_dropout,
       v.use_rslora, v.use_dora, v.trainable_params, v.adapter_bytes, v.total_bytes,
       v.base_model_name, v.base_model_revision, b.fingerprint, b.id,
       v.lineage IS NOT NULL AND v.lineage != 'null'
FROM versions v
JOIN repositories r ON r.id = v.repository_id
LEFT JOIN base_models b ON b.id = v.base_model_id
"""
# (SQLAlchemy's JSON type stores None as the JSON text 'null' unless told otherwise: `lineage` is
# None either way for the ORM, so both spellings mean "not derived" here.)


def list_versions(
    db: Path,
    *,
    repo: str | None = None,
    task: str | None = None,
    peft_type: str | None = None,
    base: str | None = None,
    latest_only: bool = False,
    limit: int = 50,
    cursor: str | None = None,
) -> dict[str, Any] | None:
    """The JSON document of `queries.list_versions(...)` read as the operator (a Page of
    VersionSummary, as `adapters list --json` prints it), or None where the full path must answer."""
    if not 1 <= limit <= PAGE_MAX:
        return None
    after = None if cursor is None else row_cursor(cursor)
    if cursor is not None and after is None:
        return None
    if any(value is not None and not _PLAIN.fullmatch(value) for value in (task, base)):
        return None
    if peft_type is not None and not _PEFT_TYPE.fullmatch(peft_type):
        return None
    where: list[str] = []
    args: list[str | int] = []
    if repo is not None:
        try:
            name = parse_repo(repo)
        except InvalidReference:
            return None
        where.append("r.namespace = ? AND r.name = ?")
        args += [name.namespace, name.name]
    if task is not None:
        where.append("v.task = ?")
        args.append(task)
    if peft_type is not None:
        where.append("v.peft_type = ?")
        args.append(peft_type.upper())
    if base is not None:
        where.append("v.base_model_name = ?")
        args.append(base)
    if latest_only:
        where.append("v.number = r.latest_version")
    if after is not None:
        where.append("v.id < ?")
        args.append(after)
    sql = _SUMMARY + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY v.id DESC LIMIT ?"
    args.append(limit + 1)
    conn = _open_at_head(db)  # one snapshot for the page, its evals and its aliases
    if conn is None:
        return None
    try:
        rows = conn.execute(sql, args).fetchall()
        page = rows[:limit]
        evals, aliases = _evals_and_aliases(conn, [row[0] for row in page])
    finally:
        conn.close()
    try:
        items = [_summary(row, evals.get(row[0], []), aliases.get(row[0], [])) for row in page]
    except _StepAside:
        return None
    return {"items": items, "next_cursor": str(page[-1][0]) if len(rows) > limit else None}


def resolve_files(db: Path, ref: str) -> dict[str, Any] | None:
    """What a pull needs of the version `ref` names, as registry.services.lookup.resolve_row finds
    it (a number, a digest, an alias, or the latest): {repo, version, digest, ref, files: [{path,
    size, sha256}]} with the files in path order; or None where the full path must answer (a ref
    it would refuse, a repository or version that does not exist: it says so, with its codes)."""
    try:
        parsed = parse_ref(ref)
    except InvalidReference:
        return None
    conn = _open_at_head(db)
    if conn is None:
        return None
    try:
        repo = conn.execute(
            "SELECT id, latest_version FROM repositories WHERE namespace = ? AND name = ?",
            (parsed.repo.namespace, parsed.repo.name),
        ).fetchone()
        if repo is None or repo[1] == 0:
            return None
        q = "SELECT v.id, v.number, v.digest FROM versions v WHERE v.repository_id = ?"
        args: list[Any] = [repo[0]]
        if parsed.version is not None:
            q += " AND v.number = ?"
            args.append(parsed.version)
        elif parsed.digest is not None:
            q += " AND v.digest = ? ORDER BY v.number DESC LIMIT 1"
            args.append(parsed.digest)
        elif parsed.alias is not None:
            q = (
                "SELECT v.id, v.number, v.digest FROM versions v JOIN aliases a ON a.version_id = v.id "
                "WHERE v.repository_id = ? AND a.repository_id = ? AND a.name = ?"
            )
            args += [repo[0], parsed.alias]
        else:
            q += " AND v.number = ?"
            args.append(repo[1])
        row = conn.execute(q, args).fetchone()
        if row is None:
            return None
        files = conn.execute(
            "SELECT path, size, digest FROM version_files WHERE version_id = ? ORDER BY path", (row[0],)
        ).fetchall()
        if all(f[0] != SIGNATURE_NAME for f in files):  # an attached signature, served as model.sig
            files += conn.execute(
                "SELECT ?, size, digest FROM version_signatures WHERE version_id = ? "
                "AND purpose = 'signature' ORDER BY id DESC LIMIT 1",
                (SIGNATURE_NAME, row[0]),
            ).fetchall()
    finally:
        conn.close()
    name = f"{parsed.repo.namespace}/{parsed.repo.name}"
    return {
        "repo": name,
        "version": row[1],
        "digest": row[2],
        "ref": f"{name}:{row[1]}",
        "files": [{"path": p, "size": size, "sha256": digest} for p, size, digest in files],
    }


def _open_at_head(db: Path) -> sqlite3.Connection | None:
    """The existing database file in a read transaction (one snapshot for what follows), or None
    when there is no such file yet or its schema is not this code's head (the full path migrates
    or refuses)."""
    conn = _connect(db)
    if conn is None:
        return None
    conn.execute("BEGIN")
    if not _at_head(conn):
        conn.close()
        return None
    return conn


def _connect(db: Path) -> sqlite3.Connection | None:
    """The existing database file, opened without creating it (mode=rw: a reader of a WAL
    database may need to create its -shm file); None when there is none yet."""
    if not db.is_file():
        return None
    try:
        conn = sqlite3.connect(
            f"file:{quote(str(db.absolute()))}?mode=rw", uri=True, timeout=30, isolation_level=None
        )
    except sqlite3.Error:
        return None
    conn.execute("PRAGMA busy_timeout=30000")  # registry.db.engine.SQLITE_BUSY_TIMEOUT_MS
    return conn


def _at_head(conn: sqlite3.Connection) -> bool:
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:  # never migrated
        return False
    return row is not None and row[0] == head_revision()


def _evals_and_aliases(
    conn: sqlite3.Connection, ids: list[int]
) -> tuple[dict[int, list[dict[str, Any]]], dict[int, list[str]]]:
    evals: dict[int, list[dict[str, Any]]] = {}
    aliases: dict[int, list[str]] = {}
    if not ids:
        return evals, aliases
    marks = ",".join("?" * len(ids))
    for vid, metric, value, dataset, split in conn.execute(
        "SELECT version_id, metric, value, dataset, split FROM eval_scores "
        f"WHERE current AND version_id IN ({marks}) ORDER BY id",
        ids,
    ):
        evals.setdefault(vid, []).append(
            {"metric": metric, "value": value, "dataset": dataset, "split": split}
        )
    for vid, name in conn.execute(
        f"SELECT version_id, name FROM aliases WHERE version_id IN ({marks}) ORDER BY name", ids
    ):
        aliases.setdefault(vid, []).append(name)
    return evals, aliases


def _summary(row: tuple[Any, ...], evals: list[dict[str, Any]], aliases: list[str]) -> dict[str, Any]:
    """VersionSummary's fields in its order, as its JSON dump writes them."""
    (_, ns, name, number, digest, created_at, pushed_by, task, peft_type, task_type, r, alpha, targets,
     dropout, rslora, dora, params, adapter_bytes, total_bytes, base_name, base_rev, fingerprint,
     base_id, derived) = row  # fmt: skip
    repo = f"{ns}/{name}"
    return {
        "repo": repo,
        "version": number,
        "digest": digest,
        "ref": f"{repo}:{number}",
        "created_at": _iso(created_at),
        "pushed_by": pushed_by,
        "task": task,
        "peft_type": peft_type,
        "task_type": task_type,
        "r": r,
        "lora_alpha": _float(alpha),
        "target_modules": None if targets is None else json.loads(targets),
        "lora_dropout": _float(dropout),
        "use_rslora": bool(rslora),
        "use_dora": bool(dora),
        "trainable_params": params,
        "adapter_bytes": adapter_bytes,
        "total_bytes": total_bytes,
        "base_model": {"name": base_name, "revision": base_rev},
        "evals": [{**e, "value": float(e["value"])} for e in evals],
        "aliases": aliases,
        "base_fingerprint": fingerprint,
        "base_linked": base_id is not None,
        "derived": bool(derived),
    }


def _float(value: float | int | None) -> float | None:
    return None if value is None else float(value)


class _StepAside(Exception):
    """A stored value this module would not write as the full path does."""


def _iso(stored: str) -> str:
    """A DateTime column as SQLAlchemy's SQLite dialect stores it (`2026-11-29 06:04:08.288081`,
    no zone, UTC), written as pydantic writes the aware UTC datetime the full path reads back
    (registry.db.types.UTCDateTime): `2026-11-29T06:04:08.288081Z`. Text with a zone (the ORM
    never writes one; a hand-made row might): the full path answers for it."""
    parsed = datetime.fromisoformat(stored)
    if parsed.tzinfo is not None:
        raise _StepAside(stored)
    return parsed.isoformat() + "Z"
