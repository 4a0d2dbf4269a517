"""evaluations as history: who recorded each score, when, and why, and which one is current; the
lineage edges table that makes descendants an index lookup (issue 13)

Revision ID: 0007
Revises: 0006
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("eval_scores") as batch_op:
        batch_op.add_column(sa.Column("recorded_by", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("created_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("note", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("current", sa.Boolean(), nullable=False, server_default=sa.true()))
    # Scores given at push time were recorded by the pusher when the version was made.
    op.execute(
        "UPDATE eval_scores SET recorded_by = (SELECT pushed_by FROM versions WHERE versions.id ="
        " eval_scores.version_id), created_at = (SELECT created_at FROM versions WHERE versions.id ="
        " eval_scores.version_id)"
    )
    # A push could list a key twice: the last one listed is the current one.
    op.execute(
        "UPDATE eval_scores SET current = false WHERE id NOT IN (SELECT max(id) FROM eval_scores"
        " GROUP BY version_id, metric, dataset, split)"
    )
    with op.batch_alter_table("eval_scores") as batch_op:
        batch_op.alter_column("recorded_by", existing_type=sa.String(length=128), nullable=False)
        batch_op.alter_column("created_at", existing_type=sa.DateTime(timezone=True), nullable=False)
    # Rankings probe each fitting version's current scores of one metric: the partial index holds
    # only current rows, and every column the probe reads (index-only scans, no heap fetch).
    op.create_index(
        "ix_eval_scores_current",
        "eval_scores",
        ["metric", "version_id", "dataset", "split", "value"],
        postgresql_where=sa.text("current"),
        sqlite_where=sa.text("current"),
    )
    op.create_table(
        "lineage_edges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("parent_key", sa.String(length=71), nullable=False),
        sa.Column("parent_ref", sa.String(length=256), nullable=True),
        sa.Column("child_version_id", sa.Integer(), nullable=True),
        sa.Column("child_base_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("weight", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["child_version_id"], ["versions.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["child_base_id"], ["base_models.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_lineage_edges_parent", "lineage_edges", ["parent_key"])
    op.create_index("ix_lineage_edges_child_version_id", "lineage_edges", ["child_version_id"])
    op.create_index("ix_lineage_edges_child_base_id", "lineage_edges", ["child_base_id"])
    _fill_edges()


def _fill_edges() -> None:
    """The edges of every lineage recorded before this table existed (derived rows are few)."""
    conn = op.get_bind()
    meta = sa.MetaData()
    edges = sa.Table("lineage_edges", meta, autoload_with=conn)
    versions = sa.Table("versions", meta, autoload_with=conn)
    bases = sa.Table("base_models", meta, autoload_with=conn)
    rows = []
    for vid, lineage in conn.execute(
        sa.select(versions.c.id, versions.c.lineage).where(versions.c.lineage.is_not(None))
    ):
        rows += [dict(child_version_id=vid, child_base_id=None, **e) for e in _recorded_edges(lineage)]
    for bid, lineage in conn.execute(
        sa.select(bases.c.id, bases.c.lineage).where(bases.c.lineage.is_not(None))
    ):
        rows += [dict(child_version_id=None, child_base_id=bid, **e) for e in _recorded_edges(lineage)]
    if rows:
        conn.execute(sa.insert(edges), rows)


# A frozen copy of registry.services.lineage_edges.recorded_edges as of this revision: a migration
# must do the same thing forever, whatever later edits make of the service.
def _recorded_edges(lineage: Any) -> list[dict[str, Any]]:
    if not isinstance(lineage, dict):
        return []
    out: list[dict[str, Any]] = []
    kind = lineage.get("kind")
    if isinstance(lineage.get("parents"), list):
        for p in lineage["parents"]:
            if isinstance(p, dict) and isinstance(p.get("digest"), str) and len(p["digest"]) <= 71:
                weight = p.get("weight")
                out.append(
                    dict(
                        parent_key=p["digest"],
                        parent_ref=_text(p.get("ref")),
                        kind="merge",
                        weight=float(weight) if isinstance(weight, int | float) else None,
                    )
                )
    if kind == "export":
        digest = lineage.get("adapter_digest")
        if isinstance(digest, str) and len(digest) <= 71:
            out.append(
                dict(parent_key=digest, parent_ref=_text(lineage.get("adapter")), kind="export", weight=None)
            )
        fingerprint = lineage.get("base_fingerprint")
        if isinstance(fingerprint, str) and len(fingerprint) <= 71:
            out.append(
                dict(
                    parent_key=fingerprint, parent_ref=_text(lineage.get("base")), kind="export", weight=None
                )
            )
    return out


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and len(value) <= 256 else None


def downgrade() -> None:
    op.drop_index("ix_lineage_edges_child_base_id", table_name="lineage_edges")
    op.drop_index("ix_lineage_edges_child_version_id", table_name="lineage_edges")
    op.drop_index("ix_lineage_edges_parent", table_name="lineage_edges")
    op.drop_table("lineage_edges")
    op.drop_index("ix_eval_scores_current", table_name="eval_scores")
    with op.batch_alter_table("eval_scores") as batch_op:
        batch_op.drop_column("current")
        batch_op.drop_column("note")
        batch_op.drop_column("created_at")
        batch_op.drop_column("recorded_by")
