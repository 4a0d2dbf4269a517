"""4-bit checks name the variant checked (quant type, double quantization, compute dtype) (issue 15)

Revision ID: 0008
Revises: 0007
"""

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op
from alembic.operations import BatchOperations

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

KEY = ["version_id", "base_model_id"]
VARIANT = ["quant_type", "double_quant", "compute_dtype"]


def _variant_columns() -> list[sa.Column[object]]:
    # Every check recorded before this revision ran on NF4, double-quantized, float32 compute.
    return [
        sa.Column("quant_type", sa.String(length=4), nullable=False, server_default="nf4"),
        sa.Column("double_quant", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("compute_dtype", sa.String(length=16), nullable=False, server_default="float32"),
    ]


@contextmanager
def _rebuilt() -> Iterator[BatchOperations]:
    """SQLite has no ALTER of a primary key: the table is rebuilt. SQLAlchemy warns that the copy's
    reflected key columns differ from the new key; that difference is the point."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*_alembic_tmp_qlora_checks.*primary_key")
        with op.batch_alter_table("qlora_checks", recreate="always") as batch_op:
            yield batch_op


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with _rebuilt() as batch_op:
            for column in _variant_columns():
                batch_op.add_column(column)
            batch_op.create_primary_key("qlora_checks_pkey", KEY + VARIANT)
        return
    for column in _variant_columns():
        op.add_column("qlora_checks", column)
    op.drop_constraint("qlora_checks_pkey", "qlora_checks", type_="primary")
    op.create_primary_key("qlora_checks_pkey", "qlora_checks", KEY + VARIANT)


def downgrade() -> None:
    # Back to one answer per (version, base): keep the default variant's, drop the others.
    op.execute(
        "DELETE FROM qlora_checks WHERE NOT (quant_type = 'nf4' AND double_quant AND compute_dtype = 'float32')"
    )
    if op.get_bind().dialect.name == "sqlite":
        with _rebuilt() as batch_op:
            batch_op.create_primary_key("qlora_checks_pkey", KEY)
            for name in VARIANT:
                batch_op.drop_column(name)
        return
    op.drop_constraint("qlora_checks_pkey", "qlora_checks", type_="primary")
    op.create_primary_key("qlora_checks_pkey", "qlora_checks", KEY)
    for name in VARIANT:
        op.drop_column("qlora_checks", name)
