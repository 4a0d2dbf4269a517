"""download counts per Hub repository (an adapter repository or a base's name) (issue 24)

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A table of its own, not a column of `repositories`: the periodic UPDATE of a count must not
    # queue behind (or hold) the row lock a commit takes on its repository.
    op.create_table(
        "hub_downloads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repository_id", sa.Integer(), nullable=True),
        sa.Column("base_name", sa.String(length=256), nullable=True),
        sa.Column("downloads", sa.BigInteger(), nullable=False, server_default="0"),
        sa.ForeignKeyConstraint(["repository_id"], ["repositories.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["base_name"], ["base_names.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("repository_id", name="uq_hub_downloads_repository_id"),
        sa.UniqueConstraint("base_name", name="uq_hub_downloads_base_name"),
        sa.CheckConstraint("(repository_id IS NULL) <> (base_name IS NULL)", name="ck_hub_downloads_one_key"),
    )


def downgrade() -> None:
    op.drop_table("hub_downloads")
