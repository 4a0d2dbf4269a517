"""A listing's limit and cursor, checked once for every driver (keyset pages, limit + 1)."""

from __future__ import annotations

from registry.bounds import PAGE_MAX, row_cursor
from registry.errors import BadRequest


def check_limit(limit: int) -> int:
    if not 1 <= limit <= PAGE_MAX:
        raise BadRequest(f"limit must be between 1 and {PAGE_MAX}")
    return limit


def parse_cursor(raw: str | None) -> int | None:
    """A previous page's next_cursor as the row id it names (None: the first page)."""
    if raw is None:
        return None
    after = row_cursor(raw)
    if after is None:
        raise BadRequest(f"invalid cursor {raw[:40]!r}: pass a next_cursor from a previous page")
    return after
