"""Xet's xorbs in the blob store, the files rebuilt from them and the global dedupe index (issue 24)

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "xet_xorbs",
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=71), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("chunks", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("hash"),
    )
    op.create_table(
        "xet_files",
        sa.Column("digest", sa.String(length=71), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("terms", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_table(
        "xet_chunks",
        sa.Column("chunk", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=71), nullable=False),
        sa.ForeignKeyConstraint(["digest"], ["xet_files.digest"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("chunk", "digest"),
    )
    op.create_index("ix_xet_chunks_digest", "xet_chunks", ["digest"])


def downgrade() -> None:
    op.drop_index("ix_xet_chunks_digest", table_name="xet_chunks")
    op.drop_table("xet_chunks")
    op.drop_table("xet_files")
    op.drop_table("xet_xorbs")
