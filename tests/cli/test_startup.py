"""What the CLI's start-up leaves out, and the cheap schema check it relies on (the times are in
bench/cli_startup.py; tests assert behaviour, not speed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from registry.db.engine import (
    alembic_head_revision,
    current_revision,
    head_revision,
    make_engine,
    upgrade,
    upgrade_if_needed,
)
from registry.db.revisions import revisions_in
from registry.errors import SchemaNewer

pytestmark = pytest.mark.server

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


def test_revision_ids_compare_as_numbers_and_a_misnamed_migration_is_refused(tmp_path: Path) -> None:
    for name in ("0009_nine.py", "0010_ten.py", "0002_two.py", "__init__.py", "README"):
        (tmp_path / name).write_text("")
    assert revisions_in(tmp_path) == ["0002", "0009", "0010"]
    (tmp_path / "fix_things.py").write_text("")
    with pytest.raises(RuntimeError, match="fix_things.py"):
        revisions_in(tmp_path)


def test_a_database_ahead_of_the_code_is_refused_in_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    engine = make_engine(f"sqlite:///{home / 'registry.db'}")
    try:
        upgrade_if_needed(engine)
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
        for migrate in (upgrade_if_needed, upgrade):
            with pytest.raises(SchemaNewer, match=f"0099 is newer .*head {head_revision()}") as err:
                migrate(engine)
            assert err.value.code == "schema_newer"
        assert current_revision(engine) == "0099"  # untouched
    finally:
        engine.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTERS_")}
    env["ADAPTERS_HOME"] = str(home)
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "list"], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "0099 is newer than this adapter-registry" in lines[0]
    assert "Traceback" not in done.stderr + done.stdout


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
