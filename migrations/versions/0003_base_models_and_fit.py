"""base models and fit

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "base_models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=71), nullable=True),
        sa.Column("structure_signature", sa.String(length=71), nullable=False),
        sa.Column("architectures", sa.JSON(), nullable=False),
        sa.Column("model_type", sa.String(length=64), nullable=True),
        sa.Column("hidden_size", sa.Integer(), nullable=True),
        sa.Column("num_layers", sa.Integer(), nullable=True),
        sa.Column("num_heads", sa.Integer(), nullable=True),
        sa.Column("num_kv_heads", sa.Integer(), nullable=True),
        sa.Column("vocab_size", sa.Integer(), nullable=True),
        sa.Column("param_count", sa.BigInteger(), nullable=False),
        sa.Column("dtype", sa.String(length=32), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("fingerprint"),
    )
    with op.batch_alter_table("base_models", schema=None) as batch_op:
        batch_op.create_index("ix_base_models_structure", ["structure_signature"], unique=False)

    op.create_table(
        "base_modules",
        sa.Column("base_model_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("in_features", sa.Integer(), nullable=False),
        sa.Column("out_features", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["base_model_id"], ["base_models.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("base_model_id", "name"),
    )
    op.create_table(
        "base_names",
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("base_model_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(["base_model_id"], ["base_models.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("base_names", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_base_names_base_model_id"), ["base_model_id"], unique=False)

    op.create_table(
        "version_modules",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("in_features", sa.Integer(), nullable=True),
        sa.Column("out_features", sa.Integer(), nullable=True),
        sa.Column("rank", sa.Integer(), nullable=True),
        sa.Column("shape_key", sa.String(length=300), nullable=False),
        sa.Column("unlinked", sa.Boolean(), nullable=False),
        sa.Column("module_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["version_id"], ["versions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("version_id", "name"),
    )
    # Per-version score lookups of the fit query's --sort / --min-score.
    op.create_index("ix_eval_scores_version_metric", "eval_scores", ["version_id", "metric", "value"])
    op.create_index(
        "ix_version_modules_unlinked_key",
        "version_modules",
        ["shape_key"],
        postgresql_where=sa.text("unlinked"),
        sqlite_where=sa.text("unlinked"),
    )
    with op.batch_alter_table("versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("base_model_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("fit_override", sa.JSON(), nullable=True))
        batch_op.create_index(batch_op.f("ix_versions_base_model_id"), ["base_model_id"], unique=False)
        batch_op.create_foreign_key("fk_versions_base_model_id", "base_models", ["base_model_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("versions", schema=None) as batch_op:
        batch_op.drop_constraint("fk_versions_base_model_id", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_versions_base_model_id"))
        batch_op.drop_column("fit_override")
        batch_op.drop_column("base_model_id")

    op.drop_index("ix_version_modules_unlinked_key", table_name="version_modules")
    op.drop_index("ix_eval_scores_version_metric", table_name="eval_scores")
    op.drop_table("version_modules")
    with op.batch_alter_table("base_names", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_base_names_base_model_id"))

    op.drop_table("base_names")
    op.drop_table("base_modules")
    with op.batch_alter_table("base_models", schema=None) as batch_op:
        batch_op.drop_index("ix_base_models_structure")

    op.drop_table("base_models")
