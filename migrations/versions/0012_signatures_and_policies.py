"""Signatures attached to versions, workers' provenance statements, namespace signing policies (issue 27)

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "version_signatures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=True),
        sa.Column("base_id", sa.Integer(), nullable=True),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("digest", sa.String(length=71), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("signer_kind", sa.String(length=16), nullable=False),
        sa.Column("fingerprint", sa.String(length=71), nullable=False),
        sa.Column("identity", sa.String(length=512), nullable=True),
        sa.Column("checked", sa.Boolean(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("purpose IN ('signature', 'provenance')", name="ck_version_signatures_purpose"),
        sa.CheckConstraint(
            "(version_id IS NULL) <> (base_id IS NULL)", name="ck_version_signatures_one_subject"
        ),
        sa.ForeignKeyConstraint(["version_id"], ["versions.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["base_id"], ["base_models.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["digest"], ["blobs.digest"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_version_signatures_version_id", "version_signatures", ["version_id"])
    op.create_index("ix_version_signatures_base_id", "version_signatures", ["base_id"])
    op.create_index("ix_version_signatures_digest", "version_signatures", ["digest"])
    op.create_table(
        "namespace_trusted_keys",
        sa.Column("namespace", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=71), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("added_by", sa.String(length=128), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("namespace", "fingerprint"),
    )
    with op.batch_alter_table("namespaces") as batch:
        batch.add_column(
            sa.Column("require_signature", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("signed_aliases", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("namespaces") as batch:
        batch.drop_column("signed_aliases")
        batch.drop_column("require_signature")
    op.drop_table("namespace_trusted_keys")
    op.drop_index("ix_version_signatures_digest", table_name="version_signatures")
    op.drop_index("ix_version_signatures_base_id", table_name="version_signatures")
    op.drop_index("ix_version_signatures_version_id", table_name="version_signatures")
    op.drop_table("version_signatures")
