"""Every moment reads back aware in UTC, on SQLite as on PostgreSQL, stored as before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import DateTime, create_engine, select, text

from registry.db import models as m
from registry.db.engine import session_factory, unit_of_work
from registry.db.types import UTCDateTime


def test_every_datetime_column_is_utc() -> None:
    plain = [
        f"{table.name}.{column.name}"
        for table in m.Base.metadata.tables.values()
        for column in table.columns
        if isinstance(column.type, DateTime)  # UTCDateTime is a TypeDecorator, not a DateTime
    ]
    assert plain == []
    assert isinstance(m.Version.__table__.c.created_at.type, UTCDateTime)


def test_moments_read_back_aware_utc(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        sessions = session_factory(engine)
        at = datetime(2026, 1, 2, 5, 4, 5, 678, tzinfo=timezone(timedelta(hours=2)))
        naive = datetime(2026, 1, 2, 3, 4, 5, 678)  # taken as UTC
        with unit_of_work(sessions) as session:
            session.add(m.Namespace(name="aware", public=False, updated_at=at))
            session.add(m.Namespace(name="naive", public=False, updated_at=naive))
        with unit_of_work(sessions) as session:
            got = dict(session.execute(select(m.Namespace.name, m.Namespace.updated_at)).tuples().all())
            raw = session.execute(text("SELECT updated_at FROM namespaces WHERE name = 'aware'")).scalar_one()
        want = datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC)
        assert got == {"aware": want, "naive": want}
        assert all(v.tzinfo is UTC for v in got.values())
        if engine.dialect.name == "sqlite":  # the stored form of DateTime(timezone=True): no migration
            assert raw == "2026-01-02 03:04:05.000678"
        else:
            assert raw == want
    finally:
        engine.dispose()
