"""Migration 0007: scores recorded before it get who and when from their version and the last one
per key becomes current; lineage recorded before it is indexed as edges; and it goes back."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text

from registry.db.engine import alembic_config
from tests.conftest import db_url_for, resource_params

MERGE = {
    "kind": "merge",
    "method": "svd",
    "parents": [
        {"ref": "acme/a:1", "digest": "sha256:" + "a" * 64, "weight": 0.7},
        {"digest": "sha256:" + "b" * 64},
    ],
}
EXPORT = {
    "kind": "export",
    "adapter": "acme/a:1",
    "adapter_digest": "sha256:" + "a" * 64,
    "base_fingerprint": "sha256:" + "f" * 64,
}


@pytest.mark.parametrize("kind", resource_params("sqlite", "postgresql"))
def test_0007_fills_history_and_edges(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = db_url_for(kind, tmp_path, request)
    engine = create_engine(url)
    cfg = alembic_config(url)

    def migrate(step: Callable[[Any, str], None], revision: str) -> None:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            step(cfg, revision)

    migrate(command.upgrade, "head")  # a no-op: both start from a template at head (tests/conftest.py)
    migrate(command.downgrade, "0006")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO repositories (id, namespace, name, created_at, latest_version, version_counter) "
                "VALUES (1, 'acme', 'mix', '2026-01-02 03:04:05', 1, 1)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO base_models (id, fingerprint, structure_signature, architectures, param_count,"
                " config, lineage, created_at) VALUES (1, 'sha256:" + "e" * 64 + "', 's', '[]', 1, '{}',"
                " :lineage, '2026-01-02 03:04:05')"
            ),
            {"lineage": json.dumps(EXPORT)},
        )
        conn.execute(
            text(
                "INSERT INTO versions (id, repository_id, number, digest, manifest, peft_type, config,"
                " use_rslora, use_dora, trainable_params, adapter_bytes, total_bytes, pushed_by, created_at,"
                " lineage) VALUES (1, 1, 1, 'sha256:" + "c" * 64 + "', '{}', 'LORA', '{}', false, false,"
                " 1, 1, 1, 'pia', '2026-01-02 03:04:05', :lineage)"
            ),
            {"lineage": json.dumps(MERGE)},
        )
        for value in (0.5, 0.6):  # a push that listed one key twice: the last one is current
            conn.execute(
                text(
                    "INSERT INTO eval_scores (version_id, metric, value, dataset) VALUES (1, 'acc', :v, 'd')"
                ),
                {"v": value},
            )
        conn.execute(text("INSERT INTO eval_scores (version_id, metric, value) VALUES (1, 'f1', 0.1)"))
    migrate(command.upgrade, "0007")
    with engine.connect() as conn:
        scores = conn.execute(
            text("SELECT metric, value, recorded_by, created_at, current FROM eval_scores ORDER BY id")
        ).all()
        edges = conn.execute(
            text(
                "SELECT parent_key, parent_ref, child_version_id, child_base_id, kind, weight "
                "FROM lineage_edges ORDER BY id"
            )
        ).all()
    assert [(s.metric, s.value, s.recorded_by, bool(s.current)) for s in scores] == [
        ("acc", 0.5, "pia", False),
        ("acc", 0.6, "pia", True),
        ("f1", 0.1, "pia", True),
    ]
    assert all(str(s.created_at).startswith("2026-01-02 03:04:05") for s in scores)
    assert [tuple(e) for e in edges] == [
        ("sha256:" + "a" * 64, "acme/a:1", 1, None, "merge", 0.7),
        ("sha256:" + "b" * 64, None, 1, None, "merge", None),
        ("sha256:" + "a" * 64, "acme/a:1", None, 1, "export", None),
        ("sha256:" + "f" * 64, None, None, 1, "export", None),
    ]
    migrate(command.downgrade, "0006")
    with engine.connect() as conn:
        assert "lineage_edges" not in inspect(conn).get_table_names()
        assert "recorded_by" not in {c["name"] for c in inspect(conn).get_columns("eval_scores")}
        assert conn.execute(text("SELECT count(*) FROM eval_scores")).scalar_one() == 3
    migrate(command.upgrade, "head")
    engine.dispose()
