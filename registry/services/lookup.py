"""Resolve a reference to its version row: the one lookup that versions and aliases both need,
kept below them so neither imports the other."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from registry.db import models as m
from registry.reads import find_version
from registry.reads.session import SessionDriver
from registry.refs import Ref


def resolve_row(session: Session, ref: Ref) -> m.Version:
    """The version `ref` names (number, digest, alias or latest), with its files and evals loaded.

    Raises:
        NotFound: the repository or the version does not exist.
    """
    vid, _, _ = find_version(SessionDriver(session), ref)  # registry.reads: the one resolution
    row = session.scalars(
        select(m.Version)
        .where(m.Version.id == vid)
        .options(selectinload(m.Version.files), selectinload(m.Version.evals))
    ).one()
    return row
