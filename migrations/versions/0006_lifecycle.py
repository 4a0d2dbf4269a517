"""lifecycle: deleting versions and repositories (a per-repository counter, so version numbers
are never reused), garbage collection of the blob store (the digests a sweep is deleting), and
the audit log

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("repositories") as batch_op:
        # The highest number ever given; latest_version stays the highest number that exists.
        batch_op.add_column(sa.Column("version_counter", sa.Integer(), nullable=False, server_default="0"))
    op.execute("UPDATE repositories SET version_counter = latest_version")
    op.create_table(
        "gc_sweeps",
        # A digest a gc run is deleting from the store: commits and base registrations listing it
        # are refused until the run has deleted it (and removed the row).
        sa.Column("digest", sa.String(length=71), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_index("ix_gc_sweeps_run_id", "gc_sweeps", ["run_id"])
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("token_id", sa.Integer(), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=512), nullable=False),
        sa.Column("namespace", sa.String(length=64), nullable=True),
        sa.Column("repo", sa.String(length=129), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    op.create_index("ix_audit_events_repo_id", "audit_events", ["repo", "id"])
    op.create_index("ix_audit_events_actor_id", "audit_events", ["actor", "id"])
    op.create_index("ix_audit_events_namespace_id", "audit_events", ["namespace", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_namespace_id", table_name="audit_events")
    op.drop_index("ix_audit_events_actor_id", table_name="audit_events")
    op.drop_index("ix_audit_events_repo_id", table_name="audit_events")
    op.drop_index("ix_audit_events_at", table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_index("ix_gc_sweeps_run_id", table_name="gc_sweeps")
    op.drop_table("gc_sweeps")
    with op.batch_alter_table("repositories") as batch_op:
        batch_op.drop_column("version_counter")
