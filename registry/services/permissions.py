"""The access checks the services share, in the words of the resources they guard (a repository,
a base, a blob, a job); the rules themselves are registry.access.policy's."""

from __future__ import annotations

from sqlalchemy.orm import Session

from registry.access.checks import require_base_name, require_namespace
from registry.access.principal import Action, Principal
from registry.errors import NotFound
from registry.refs import RepoName


def repo_not_found(repo: RepoName, ref: str | None = None) -> NotFound:
    """The answer for a repository that does not exist, or that the caller may not read."""
    return NotFound(f"repository {repo} does not exist", ref=ref or str(repo))


def require_reader_of(session: Session, principal: Principal, repo: RepoName, ref: str | None = None) -> None:
    require_namespace(session, principal, "read", repo.namespace, lambda: repo_not_found(repo, ref))


def require_writer_of(session: Session, principal: Principal, repo: RepoName) -> None:
    require_namespace(session, principal, "write", repo.namespace, lambda: repo_not_found(repo))


def base_not_found(name: str) -> NotFound:
    return NotFound(f"no registered base model {name!r}; register it with `adapters base add`", base=name)


def require_on_base_name(session: Session, principal: Principal, action: Action, name: str) -> None:
    require_base_name(session, principal, action, name, lambda: base_not_found(name))
