"""Alembic migrations: the only source of the schema. Run with `adapters db upgrade`."""
