"""Engine construction (SQLite pragmas), the unit of work, and Alembic upgrade."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from registry.db.revisions import head_revision, known_revisions
from registry.errors import Conflict, SchemaNewer

SQLITE_BUSY_TIMEOUT_MS = 30_000
log = logging.getLogger(__name__)


def make_engine(url: str) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys, a busy timeout and write-locking BEGINs."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("postgresql"):
        # Registry queries are short index lookups. PostgreSQL's JIT compiled for ~0.8 s on fit
        # plans its cost model thought big, and parallel workers cost ~9 ms to start for 1 ms of
        # work (bench/fit_query.py): both are pure loss here.
        options = "-c jit=off -c max_parallel_workers_per_gather=0"
        return create_engine(url, pool_pre_ping=True, connect_args={"options": options})
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    path = url.split(":///", 1)[1] if ":///" in url else ""
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (pysqlite's default is
        # broken for this), then set pragmas outside any transaction.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front: one writer at a time, and no deadlock from
        # two readers upgrading to writers. This is SQLite's single-writer transaction.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on error, always close.

    IntegrityError (a lost race on a unique key) becomes Conflict.
    """
    session = factory()
    try:
        yield session
        session.commit()
    except IntegrityError as err:
        session.rollback()
        # The driver's message names constraints and echoes values: the log has it, not the client.
        log.warning("unit of work rolled back on an integrity error: %s", err.orig)
        raise Conflict("a concurrent change conflicted with this one; retry") from err
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def insert_ignoring_duplicates(session: Session, model: type[Any], rows: list[dict[str, Any]]) -> None:
    """INSERT rows, skipping those whose primary key exists: one statement, so two writers racing
    on the same new key both succeed (a read-then-insert lost that race with a duplicate key)."""
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        session.execute(pg_insert(model).values(rows).on_conflict_do_nothing())
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        session.execute(sqlite_insert(model).values(rows).on_conflict_do_nothing())


@contextmanager
def read_only(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session for reads that need no transaction of their own: on PostgreSQL it runs in
    autocommit (no BEGIN and COMMIT round trips; each statement sees committed data); elsewhere it
    is a normal unit of work."""
    engine = factory.kw["bind"]
    if engine.dialect.name != "postgresql":
        with unit_of_work(factory) as session:
            yield session
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        session = factory(bind=conn)
        try:
            yield session
        finally:
            session.close()


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("migrations")))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision.

    Raises:
        SchemaNewer: the database is at a revision this code does not know (a newer release
            migrated it); Alembic would fail with a traceback, and nothing is changed.
    """
    check_not_newer(current_revision(engine))  # before importing Alembic: it is slow to load
    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated). One query on Alembic's own table,
    without importing Alembic: start-up pays it on every embedded command, and importing Alembic
    (with Mako and Pygments behind it) took about a quarter of `adapters list` (bench/cli_startup.py)."""
    with engine.connect() as conn:
        try:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except DBAPIError:  # no such table: a database no migration has touched
            return None


def check_not_newer(revision: str | None) -> None:
    """Raise SchemaNewer if the database's `revision` is not one this code knows."""
    if revision is None:
        return
    known = known_revisions()
    if revision not in known:
        raise SchemaNewer(
            f"database schema {revision} is newer than this adapter-registry (head {known[-1]}): "
            "upgrade adapter-registry",
            revision=revision,
            head=known[-1],
        )


def alembic_head_revision() -> str | None:
    """The head as Alembic computes it from the revision graph (what `head_revision` must equal)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def upgrade_if_needed(engine: Engine) -> bool:
    """Migrate to head unless the database is there already (one cheap query); True if it ran."""
    if current_revision(engine) == head_revision():
        return False
    upgrade(engine)
    return True
