"""The reads of versions: a listing page (summaries, with their current evals and aliases in one
query each), and a reference (number, digest, alias, latest) resolved to a version and the files a
pull writes. Each function takes a Driver; none checks access but through `readable` (the
namespaces the caller may read besides public ones; None: every namespace, the operator)."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from registry.errors import NotFound
from registry.formats.paths import SIGNATURE_NAME
from registry.reads.documents import SUMMARY_COLUMNS, summary_doc
from registry.reads.driver import Driver
from registry.reads.paging import check_limit, parse_cursor
from registry.refs import Ref, parse_repo


@dataclass(frozen=True)
class Listing:
    """VersionFilter's fields, as values it accepted (the entities validate text; see
    registry.client.reads for the embedded CLI's check)."""

    repo: str | None = None
    task: str | None = None
    peft_type: str | None = None
    base: str | None = None
    latest_only: bool = False
    search: str | None = None
    """A case-insensitive substring of "namespace/name" or of the task (the UI's repositories
    search; blank: no condition)."""


def readable_clause(readable: Collection[str] | None, column: str, params: dict[str, Any]) -> str | None:
    """SQL keeping the rows whose namespace (`column`) is in `readable` or public, as
    registry.access.checks.readable does for the ORM; None: no condition (the operator)."""
    if readable is None:
        return None
    public = f"EXISTS (SELECT 1 FROM namespaces n WHERE n.name = {column} AND n.public)"
    names = sorted(readable)
    if not names:
        return public
    marks = []
    for i, name in enumerate(names):
        params[f"ns{i}"] = name
        marks.append(f":ns{i}")
    return f"({column} IN ({', '.join(marks)}) OR {public})"


def list_versions(
    db: Driver,
    flt: Listing,
    limit: int = 50,
    cursor: str | None = None,
    *,
    readable: Collection[str] | None,
) -> dict[str, Any]:
    """Newest first: a Page of VersionSummary's JSON document. Three queries whatever the page's
    size: the summaries, their current evals, their aliases.

    Raises:
        BadRequest: a limit outside 1..PAGE_MAX, or a cursor no page gave.
        InvalidReference: `flt.repo` is not a repository name.
    """
    check_limit(limit)
    params: dict[str, Any] = {}
    where = [c for c in [readable_clause(readable, "r.namespace", params)] if c]
    if flt.repo:
        name = parse_repo(flt.repo)
        where.append("r.namespace = :namespace AND r.name = :name")
        params.update(namespace=name.namespace, name=name.name)
    if flt.task:
        where.append("v.task = :task")
        params["task"] = flt.task
    if flt.peft_type:
        where.append("v.peft_type = :peft_type")
        params["peft_type"] = flt.peft_type.upper()
    if flt.base:
        where.append("v.base_model_name = :base")
        params["base"] = flt.base
    if flt.latest_only:
        where.append("v.number = r.latest_version")
    needle = (flt.search or "").strip().lower()
    if needle:
        # '!' escapes LIKE's wildcards: a backslash would mean different things to SQLAlchemy's
        # text(), to PostgreSQL's string literals and to SQLite.
        params["search"] = "%" + re.sub(r"([!%_])", r"!\1", needle) + "%"
        where.append(
            "(LOWER(r.namespace || '/' || r.name) LIKE :search ESCAPE '!'"
            " OR LOWER(COALESCE(v.task, '')) LIKE :search ESCAPE '!')"
        )
    after = parse_cursor(cursor)
    if after is not None:
        where.append("v.id < :after")
        params["after"] = after
    params["limit"] = limit + 1
    sql = (
        f"SELECT {_SUMMARY_FROM}"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY v.id DESC LIMIT :limit"
    )
    rows = db.rows(sql, params)
    page = rows[:limit]
    return {"items": _documents(db, page), "next_cursor": str(page[-1][0]) if len(rows) > limit else None}


def summaries(db: Driver, ids: list[int]) -> list[dict[str, Any]]:
    """VersionSummary's JSON documents of the versions `ids` (those that exist, in that order):
    three queries, as a listing page."""
    if not ids:
        return []
    marks, params = _id_params(ids)
    rows = {row[0]: row for row in db.rows(f"SELECT {_SUMMARY_FROM} WHERE v.id IN ({marks})", params)}
    return _documents(db, [rows[i] for i in ids if i in rows])


_SUMMARY_FROM = (
    f"{SUMMARY_COLUMNS} FROM versions v JOIN repositories r ON r.id = v.repository_id "
    "LEFT JOIN base_models b ON b.id = v.base_model_id"
)


def _documents(db: Driver, rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    evals, aliases = _evals_and_aliases(db, [row[0] for row in rows])
    return [summary_doc(row, evals.get(row[0], []), aliases.get(row[0], [])) for row in rows]


def _id_params(ids: list[int]) -> tuple[str, dict[str, Any]]:
    params = {f"id{i}": vid for i, vid in enumerate(ids)}
    return ", ".join(f":{k}" for k in params), params


def _evals_and_aliases(
    db: Driver, ids: list[int]
) -> tuple[dict[int, list[dict[str, Any]]], dict[int, list[str]]]:
    """The current evals (in the order they were recorded) and the alias names (sorted) of the
    versions `ids`: one query each."""
    evals: dict[int, list[dict[str, Any]]] = {}
    aliases: dict[int, list[str]] = {}
    if not ids:
        return evals, aliases
    marks, params = _id_params(ids)
    for vid, metric, value, dataset, split in db.rows(
        "SELECT version_id, metric, value, dataset, split FROM eval_scores "
        f"WHERE current AND version_id IN ({marks}) ORDER BY id",
        params,
    ):
        evals.setdefault(vid, []).append(
            {"metric": metric, "value": value, "dataset": dataset, "split": split}
        )
    for vid, name in db.rows(
        f"SELECT version_id, name FROM aliases WHERE version_id IN ({marks}) ORDER BY name", params
    ):
        aliases.setdefault(vid, []).append(name)
    return evals, aliases


def find_version(db: Driver, ref: Ref) -> tuple[int, int, str]:
    """The version `ref` names (its number; the newest with a digest; an alias's; the latest) as
    (id, number, digest), in one query when it exists.

    Raises:
        NotFound: the repository (or one whose versions were all deleted) or the version does not exist.
    """
    params: dict[str, Any] = {"namespace": ref.repo.namespace, "name": ref.repo.name}
    sql = "SELECT v.id, v.number, v.digest FROM versions v JOIN repositories r ON r.id = v.repository_id"
    if ref.alias is not None:
        sql += " JOIN aliases a ON a.version_id = v.id AND a.repository_id = r.id AND a.name = :alias"
        params["alias"] = ref.alias
    sql += " WHERE r.namespace = :namespace AND r.name = :name AND r.latest_version != 0"
    if ref.version is not None:
        sql += " AND v.number = :number"
        params["number"] = ref.version
    elif ref.digest is not None:
        sql += " AND v.digest = :digest ORDER BY v.number DESC"
        params["digest"] = ref.digest
    elif ref.alias is None:
        sql += " AND v.number = r.latest_version"
    rows = db.rows(sql + " LIMIT 1", params)
    if rows:
        vid, number, digest = rows[0]
        return vid, number, digest
    exists = db.rows(
        "SELECT 1 FROM repositories WHERE namespace = :namespace AND name = :name AND latest_version != 0",
        {"namespace": ref.repo.namespace, "name": ref.repo.name},
    )
    if not exists:
        raise NotFound(f"repository {ref.repo} does not exist", ref=str(ref))
    raise NotFound(f"{ref} does not exist", ref=str(ref))


def version_files(db: Driver, version_id: int) -> list[dict[str, Any]]:
    """What a pull writes of a version, in path order: its files, and its newest attached signature
    as model.sig when it has none of its own (`adapters sign`: a pulled folder then passes
    `model_signing verify`; registry.client.transfer.served_files says the same of a VersionInfo)."""
    files = db.rows(
        "SELECT path, size, digest FROM version_files WHERE version_id = :id ORDER BY path",
        {"id": version_id},
    )
    if all(f[0] != SIGNATURE_NAME for f in files):
        files += [
            (SIGNATURE_NAME, size or 0, digest)
            for size, digest in db.rows(
                "SELECT size, digest FROM version_signatures WHERE version_id = :id "
                "AND purpose = 'signature' AND digest IS NOT NULL ORDER BY id DESC LIMIT 1",
                {"id": version_id},
            )
        ]
    return [{"path": p, "size": size, "sha256": digest} for p, size, digest in files]


def resolve_files(db: Driver, ref: Ref) -> dict[str, Any]:
    """{repo, version, digest, ref, files} of the version `ref` names (find_version,
    version_files). Raises NotFound as find_version does."""
    vid, number, digest = find_version(db, ref)
    repo = str(ref.repo)
    return {
        "repo": repo,
        "version": number,
        "digest": digest,
        "ref": f"{repo}:{number}",
        "files": version_files(db, vid),
    }
