"""several bases may share a fingerprint: each namespace registers known weights under its own names (issue 21)

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Iterator
from contextlib import contextmanager

from alembic import op
from alembic.operations import BatchOperations

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# 0003 created the constraint without a name: PostgreSQL named it; SQLite's is named here by
# convention, so that the batch rebuild can drop it.
PG_UNIQUE = "base_models_fingerprint_key"
SQLITE_UNIQUE = "uq_base_models_fingerprint"
INDEX = "ix_base_models_fingerprint"

CASCADED = {
    "base_names": "base_model_id IS NOT NULL",
    "base_modules": "base_model_id IS NOT NULL",
    "qlora_checks": "base_model_id IS NOT NULL",
    "lineage_edges": "child_base_id IS NOT NULL",
}
"""The tables whose rows reference base_models with ON DELETE CASCADE (at this revision)."""


@contextmanager
def _rebuilt() -> Iterator[BatchOperations]:
    """SQLite drops a UNIQUE constraint only by rebuilding the table, and migrations run in one
    transaction with foreign keys on (registry/db/engine.py), where PRAGMA foreign_keys is a
    no-op: dropping the old table deletes its rows first, which cascades to every row that
    references a base (measured: names and module tables gone) and is refused for a version linked
    to one. So the references are moved aside (foreign keys on or off, the drop then finds none)
    and put back once the rebuilt table has the rows."""
    kept = {table: f"_keep_0009_{table}" for table in CASCADED}
    for table, where in CASCADED.items():
        op.execute(f"CREATE TEMP TABLE {kept[table]} AS SELECT * FROM {table} WHERE {where}")
        op.execute(f"DELETE FROM {table} WHERE {where}")
    op.execute(
        "CREATE TEMP TABLE _keep_0009_links AS SELECT id, base_model_id FROM versions"
        " WHERE base_model_id IS NOT NULL"
    )
    op.execute("UPDATE versions SET base_model_id = NULL WHERE base_model_id IS NOT NULL")
    with op.batch_alter_table(
        "base_models", recreate="always", naming_convention={"uq": "uq_%(table_name)s_%(column_0_name)s"}
    ) as batch_op:
        yield batch_op
    for table in CASCADED:
        op.execute(f"INSERT INTO {table} SELECT * FROM {kept[table]}")
        op.execute(f"DROP TABLE {kept[table]}")
    op.execute(
        "UPDATE versions SET base_model_id = (SELECT k.base_model_id FROM _keep_0009_links k"
        " WHERE k.id = versions.id) WHERE id IN (SELECT id FROM _keep_0009_links)"
    )
    op.execute("DROP TABLE _keep_0009_links")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with _rebuilt() as batch_op:
            batch_op.drop_constraint(SQLITE_UNIQUE, type_="unique")
            batch_op.create_index(INDEX, ["fingerprint"], unique=False)
        return
    op.drop_constraint(PG_UNIQUE, "base_models", type_="unique")
    op.create_index(INDEX, "base_models", ["fingerprint"], unique=False)


def downgrade() -> None:
    # Back to one base per fingerprint: the first registered keeps it; later copies keep their
    # names, links and files and become structure-only bases (fingerprint unknown).
    op.execute(
        "UPDATE base_models SET fingerprint = NULL WHERE fingerprint IS NOT NULL AND id > "
        "(SELECT MIN(b.id) FROM base_models b WHERE b.fingerprint = base_models.fingerprint)"
    )
    if op.get_bind().dialect.name == "sqlite":
        with _rebuilt() as batch_op:
            batch_op.drop_index(INDEX)
            batch_op.create_unique_constraint(SQLITE_UNIQUE, ["fingerprint"])
        return
    op.drop_index(INDEX, table_name="base_models")
    op.create_unique_constraint(PG_UNIQUE, "base_models", ["fingerprint"])
