"""The server's Driver: the read SQL through a SQLAlchemy session (SQLite or PostgreSQL), in the
session's transaction. Imported only by the services: it imports SQLAlchemy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session


class SessionDriver:
    def __init__(self, session: Session) -> None:
        self.session = session

    def rows(self, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self.session.execute(text(sql), dict(params))]
