"""Aliases: movable names (production, staging, ...) pointing at immutable versions."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.access.checks import require_writer_of
from registry.access.principal import Principal
from registry.db import models as m
from registry.db.engine import unit_of_work
from registry.entities import AliasInfo
from registry.errors import NotFound
from registry.refs import Ref, RepoName, check_alias
from registry.services import audit, signatures
from registry.services.context import Registry
from registry.services.lookup import resolve_row
from registry.services.timeutil import now


def point_alias(session: Session, repository: m.Repository, version: m.Version, alias: str) -> None:
    """Create the alias or move it to `version`."""
    row = session.scalars(
        select(m.Alias).where(m.Alias.repository_id == repository.id, m.Alias.name == alias)
    ).one_or_none()
    if row is None:
        session.add(m.Alias(repository_id=repository.id, name=alias, version_id=version.id, updated_at=now()))
    else:
        row.version_id = version.id
        row.updated_at = now()


def set_alias(reg: Registry, ref: Ref, alias: str, *, principal: Principal) -> AliasInfo:
    check_alias(alias)
    with unit_of_work(reg.sessions) as session:
        require_writer_of(session, principal, ref.repo)
        version = resolve_row(session, ref)
        signatures.enforce_alias(session, reg.store, version, alias)
        point_alias(session, version.repository, version, alias)
        audit.record(
            session,
            principal,
            "alias.set",
            f"{ref.repo}@{alias}",
            {"version": version.number, "digest": version.digest},
            repo=str(ref.repo),
        )
        return AliasInfo(repo=str(ref.repo), alias=alias, version=version.number, digest=version.digest)


def delete_alias(reg: Registry, repo: RepoName, alias: str, *, principal: Principal) -> AliasInfo:
    with unit_of_work(reg.sessions) as session:
        require_writer_of(session, principal, repo)
        row = session.execute(
            select(m.Alias, m.Version)
            .join(m.Repository, m.Repository.id == m.Alias.repository_id)
            .join(m.Version, m.Version.id == m.Alias.version_id)
            .where(
                m.Repository.namespace == repo.namespace,
                m.Repository.name == repo.name,
                m.Alias.name == alias,
            )
        ).one_or_none()
        if row is None:
            raise NotFound(f"{repo} has no alias {alias!r}", repo=str(repo), alias=alias)
        alias_row, version = row
        session.delete(alias_row)
        audit.record(
            session,
            principal,
            "alias.rm",
            f"{repo}@{alias}",
            {"version": version.number, "digest": version.digest},
            repo=str(repo),
        )
        return AliasInfo(repo=str(repo), alias=alias, version=version.number, digest=version.digest)
