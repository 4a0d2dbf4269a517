"""The schema revisions this code knows, read from the migrations' file names: no SQLAlchemy, no
Alembic, so a command that only needs to know whether a database is at head (the embedded reads
on a bare sqlite3 connection, registry.reads.open_at_head) does not pay for importing either."""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable


def known_revisions() -> list[str]:
    """Every revision id, oldest first, read from the migrations' file names without importing
    Alembic (see `revisions_in`)."""
    return revisions_in(resources.files("migrations").joinpath("versions"))


def revisions_in(versions: Traversable) -> list[str]:
    """The revision ids in the folder `versions`, oldest first: each revision file is NNNN_slug.py
    with `revision = "NNNN"`, in a single chain (which tests/cli/test_startup.py checks against
    Alembic's own head). A .py file named otherwise is refused rather than skipped (the head
    computed here would be wrong), and ids compare as numbers."""
    ids = []
    for entry in versions.iterdir():
        if not entry.name.endswith(".py") or entry.name == "__init__.py":
            continue
        rev, sep, _ = entry.name.partition("_")
        if not (sep and len(rev) == 4 and rev.isdigit()):
            raise RuntimeError(f"migration file {entry.name!r} is not named NNNN_slug.py")
        ids.append(rev)
    return sorted(ids, key=int)


def head_revision() -> str:
    """The newest revision (the highest NNNN, compared as a number)."""
    return known_revisions()[-1]
