from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    """Timezone-aware UTC now: stored as such in PostgreSQL, as ISO text in SQLite."""
    return datetime.now(UTC)
