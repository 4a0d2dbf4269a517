"""What the CLI's start-up leaves out, and the cheap schema check it relies on (the times are in
bench/cli_startup.py; tests assert behaviour, not speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from registry.db.engine import (
    alembic_head_revision,
    current_revision,
    head_revision,
    make_engine,
    upgrade_if_needed,
)

HEAVY = {"alembic", "mako", "pygments", "pydantic", "sqlalchemy", "torch"}
"""Packages `adapters --help` must not load (the database's, the migrations', the entities', the tensors')."""


def loaded_after(code: str, env: dict[str, str] | None = None) -> set[str]:
    """The top modules loaded once `code` has run in a fresh interpreter."""
    probe = code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, env=env
    ).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_the_head_revision_from_file_names_is_alembics() -> None:
    assert head_revision() == alembic_head_revision()


def test_the_schema_check_reads_alembics_table(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        assert current_revision(engine) is None  # never migrated: no alembic_version table
        assert upgrade_if_needed(engine) is True
        assert current_revision(engine) == head_revision()
        assert upgrade_if_needed(engine) is False  # at head: nothing runs
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
        assert current_revision(engine) == "0001"
    finally:
        engine.dispose()


def test_help_loads_no_database_no_models_and_no_tables() -> None:
    loaded = loaded_after(
        "import sys; sys.argv = ['adapters', '--help']\n"
        "from cli.main import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass"
    )
    assert sorted(m for m in loaded if m.split(".")[0] in HEAVY) == []


def test_an_embedded_list_does_not_import_alembic_but_a_fresh_registry_still_migrates(
    tmp_path: Path,
) -> None:
    env = {"ADAPTERS_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    code = (
        "import sys; sys.argv = ['adapters', 'list', '--json']\n"
        "from cli.main import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code"
    )
    first = loaded_after(code, env)
    assert "alembic" in first  # the embedded default creates its schema on first use
    again = loaded_after(code, env)
    assert "alembic" not in again and "mako" not in again
    assert "torch" not in again
    engine = make_engine(f"sqlite:///{tmp_path / 'home' / 'registry.db'}")
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
