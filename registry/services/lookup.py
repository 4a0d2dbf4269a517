"""Resolve a reference to its version row: the one lookup that versions and aliases both need,
kept below them so neither imports the other."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from registry.db import models as m
from registry.errors import NotFound
from registry.refs import Ref


def resolve_row(session: Session, ref: Ref) -> m.Version:
    """The version `ref` names (number, digest, alias or latest), with its files and evals loaded.

    Raises:
        NotFound: the repository or the version does not exist.
    """
    repository = session.scalars(
        select(m.Repository).where(
            m.Repository.namespace == ref.repo.namespace, m.Repository.name == ref.repo.name
        )
    ).one_or_none()
    if repository is None or repository.latest_version == 0:
        raise NotFound(f"repository {ref.repo} does not exist", ref=str(ref))
    q = select(m.Version).where(m.Version.repository_id == repository.id)
    if ref.version is not None:
        q = q.where(m.Version.number == ref.version)
    elif ref.digest is not None:
        q = q.where(m.Version.digest == ref.digest).order_by(m.Version.number.desc()).limit(1)
    elif ref.alias is not None:
        q = q.join(m.Alias, m.Alias.version_id == m.Version.id).where(
            m.Alias.repository_id == repository.id, m.Alias.name == ref.alias
        )
    else:
        q = q.where(m.Version.number == repository.latest_version)
    row = session.scalars(q.options(selectinload(m.Version.files), selectinload(m.Version.evals))).first()
    if row is None:
        raise NotFound(f"{ref} does not exist", ref=str(ref))
    return row
