"""Deleting versions and repositories.

A version row is really deleted (its files, evals, modules, 4-bit checks and aliases go with it
by ON DELETE CASCADE); its blobs stay until `gc` finds nothing lists them. The repository keeps
`version_counter`, so a deleted number is never given again, and `latest_version` becomes the
highest number left (0: the repository reads as absent, its row kept as the counter's tombstone).
A repository that never had a version (the Hub's `create_repo` makes one) has nothing to keep:
deleting it removes its row, and the name is free again.
Lineage that names a deleted version keeps its digest; reads mark it `deleted`
(registry.reads.version.lineage_view).
"""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from registry.access.checks import repo_not_found, require_writer_of
from registry.access.principal import Principal
from registry.db import models as m
from registry.db.engine import unit_of_work
from registry.entities import DeleteResult
from registry.errors import AliasInUse
from registry.refs import Ref, RepoName
from registry.services import audit
from registry.services.context import Registry
from registry.services.lookup import resolve_row


def delete_version(reg: Registry, ref: Ref, force: bool = False, *, principal: Principal) -> DeleteResult:
    """Delete the version `ref` names. Refused (AliasInUse, 409) while an alias points at it,
    unless `force`, which removes those aliases too."""
    with unit_of_work(reg.sessions) as session:
        require_writer_of(session, principal, ref.repo)
        repository = _lock(session, ref.repo)
        version = resolve_row(session, ref)
        names = list(
            session.scalars(
                select(m.Alias.name).where(m.Alias.version_id == version.id).order_by(m.Alias.name)
            )
        )
        if names and not force:
            raise AliasInUse(
                f"{ref.repo}:{version.number} is aliased as {', '.join(names)}; move or remove the "
                f"aliases (`adapters alias rm {ref.repo} {names[0]}`) or pass --force to remove them",
                aliases=names,
            )
        number, digest = version.number, version.digest
        session.expunge(version)
        session.execute(delete(m.Alias).where(m.Alias.version_id == version.id))
        session.execute(delete(m.Version).where(m.Version.id == version.id))
        _reset_latest(session, repository)
        audit.record(
            session,
            principal,
            "version.rm",
            f"{ref.repo}:{number}",
            {"digest": digest, "aliases_removed": names, "force": force},
            repo=str(ref.repo),
        )
        return DeleteResult(repo=str(ref.repo), versions=[number], digests=[digest], aliases_removed=names)


def delete_repository(reg: Registry, repo: RepoName, *, principal: Principal) -> DeleteResult:
    """Delete every version and alias of `repo`. Its numbers are not given again if it is pushed
    to later (the row stays, holding the counter, and reads as absent). An empty repository (one
    that never had a version) goes entirely."""
    with unit_of_work(reg.sessions) as session:
        require_writer_of(session, principal, repo)
        repository = _lock(session, repo, empty=True)
        rows = session.execute(
            select(m.Version.number, m.Version.digest)
            .where(m.Version.repository_id == repository.id)
            .order_by(m.Version.number)
        ).all()
        names = list(
            session.scalars(
                select(m.Alias.name).where(m.Alias.repository_id == repository.id).order_by(m.Alias.name)
            )
        )
        session.execute(delete(m.Alias).where(m.Alias.repository_id == repository.id))
        session.execute(delete(m.Version).where(m.Version.repository_id == repository.id))
        if repository.version_counter == repository.latest_version == 0:
            session.delete(repository)  # never had a version: no number to keep
        else:
            repository.version_counter = max(repository.version_counter, repository.latest_version)
            repository.latest_version = 0
        numbers = [n for n, _ in rows]
        audit.record(
            session,
            principal,
            "repo.rm",
            str(repo),
            {"versions": numbers, "aliases_removed": names},
            repo=str(repo),
        )
        return DeleteResult(
            repo=str(repo),
            versions=numbers,
            digests=[d for _, d in rows],
            aliases_removed=names,
            repository_deleted=True,
        )


def _lock(session: Session, repo: RepoName, *, empty: bool = False) -> m.Repository:
    """The repository row, locked as a push locks it (numbers are handed out under this lock).
    One with no version is absent, unless `empty` and it never had one (made by create_repo)."""
    row = session.scalars(
        select(m.Repository)
        .where(m.Repository.namespace == repo.namespace, m.Repository.name == repo.name)
        .with_for_update()
    ).one_or_none()
    if row is None or (row.latest_version == 0 and not (empty and row.version_counter == 0)):
        raise repo_not_found(repo)
    return row


def _reset_latest(session: Session, repository: m.Repository) -> None:
    highest = session.scalar(
        select(func.max(m.Version.number)).where(m.Version.repository_id == repository.id)
    )
    repository.version_counter = max(repository.version_counter, repository.latest_version)
    repository.latest_version = int(highest or 0)
