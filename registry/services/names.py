"""One name, one kind of repository: an adapter repository and a base model may not share a name,
because the Hugging Face Hub protocol serves both at `/{namespace}/{name}`."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.db import models as m
from registry.errors import NameTaken
from registry.refs import RepoName


def refuse_base_name(session: Session, repo: RepoName) -> None:
    """Before an adapter repository is created: refuse a name a base model already has.

    Raises:
        NameTaken: a registered base is named `namespace/name`.
    """
    if session.get(m.BaseName, str(repo)) is not None:
        raise NameTaken(f"{repo} names a base model; push the adapter under another name", name=str(repo))


def refuse_repository_name(session: Session, name: str) -> None:
    """Before a base model takes a name: refuse the name of an adapter repository.

    Raises:
        NameTaken: an adapter repository is named `name`.
    """
    parts = name.split("/")
    if len(parts) != 2:
        return
    taken = session.scalars(
        select(m.Repository.id).where(m.Repository.namespace == parts[0], m.Repository.name == parts[1])
    ).first()
    if taken is not None:
        raise NameTaken(f"{name} is an adapter repository; register the base under another name", name=name)
