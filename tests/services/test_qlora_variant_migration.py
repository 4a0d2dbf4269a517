"""Migration 0008: a 4-bit check is keyed by its variant too; checks recorded before it are the
default variant's (NF4, double-quantized, float32 compute), and going back keeps only those."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Connection

from registry.db.engine import alembic_config
from tests.conftest import db_url_for, resource_params

ROW = (
    "INSERT INTO qlora_checks (version_id, base_model_id, {variant}verdict, report, created_at) "
    "VALUES (1, 1, {values}:verdict, '{{}}', CURRENT_TIMESTAMP)"
)


@pytest.mark.parametrize("kind", resource_params("sqlite", "postgresql"))
def test_0008_keys_checks_by_variant_and_goes_back_to_the_default_one(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = db_url_for(kind, tmp_path, request)
    engine = create_engine(url)  # no foreign keys pragma on SQLite: rows without versions are fine here
    cfg = alembic_config(url)

    def migrate(step: Callable[[Any, str], None], revision: str) -> None:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            step(cfg, revision)

    def insert(conn: Connection, verdict: str, variant: tuple[str, bool, str] | None) -> None:
        if kind == "postgresql":  # this test's rows have no versions or bases behind them
            conn.execute(text("SET session_replication_role = replica"))
        if variant is None:
            conn.execute(text(ROW.format(variant="", values="")), {"verdict": verdict})
            return
        sql = ROW.format(variant="quant_type, double_quant, compute_dtype, ", values=":q, :dq, :c, ")
        conn.execute(text(sql), {"verdict": verdict, "q": variant[0], "dq": variant[1], "c": variant[2]})

    def rows() -> list[tuple[Any, ...]]:
        with engine.connect() as conn:
            cols = {c["name"] for c in inspect(conn).get_columns("qlora_checks")}
            variant = ", quant_type, double_quant, compute_dtype" if "quant_type" in cols else ""
            return [
                tuple(r)
                for r in conn.execute(text(f"SELECT verdict{variant} FROM qlora_checks ORDER BY verdict"))
            ]

    migrate(command.upgrade, "head")  # a no-op: both start from a template at head (tests/conftest.py)
    migrate(command.downgrade, "0007")
    with engine.begin() as conn:
        insert(conn, "warn", None)
    assert rows() == [("warn",)]
    migrate(command.upgrade, "head")
    assert rows() == [("warn", "nf4", True, "float32")]  # a check from before: the default variant
    with engine.connect() as conn:
        key = inspect(conn).get_pk_constraint("qlora_checks")["constrained_columns"]
    assert key == ["version_id", "base_model_id", "quant_type", "double_quant", "compute_dtype"]
    with engine.begin() as conn:  # the same version and base, another variant: a second answer
        insert(conn, "fail", ("fp4", False, "bfloat16"))
    assert rows() == [("fail", "fp4", False, "bfloat16"), ("warn", "nf4", True, "float32")]

    migrate(command.downgrade, "0007")
    assert rows() == [("warn",)]
    migrate(command.upgrade, "head")
    assert rows() == [("warn", "nf4", True, "float32")]
    engine.dispose()
