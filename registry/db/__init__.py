"""Metadata database: SQLAlchemy models, engine and unit of work, Alembic upgrade."""
