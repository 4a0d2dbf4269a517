"""CLI fixtures: the `adapters` command run in-process by click's runner, embedded or against a server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cli.main import cli
from registry.api import create_app
from registry.services.context import Registry
from tests.conftest import ServerThread, db_url_for, make_settings, resource_params

MODES = resource_params(
    "embedded", "sqlite-file", "sqlite-s3", "postgresql-file", "postgresql-s3", server=True
)
"""Where the CLI runs (open_cli): in-process, or against a uvicorn server on each database and store."""


class Cli:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.runner = CliRunner()

    def __call__(self, *args: str, ok: bool = True) -> Result:
        result = self.runner.invoke(cli, list(args), env=self.env, catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)


@pytest.fixture
def embedded(tmp_path: Path) -> Cli:
    """No configuration but ADAPTERS_HOME: SQLite + local blobs, no server."""
    return Cli(
        {
            "ADAPTERS_HOME": str(tmp_path / "home"),
            "ADAPTERS_URL": "",
            "ADAPTERS_DATABASE_URL": "",
            "ADAPTERS_BLOB_URL": "",
        }
    )


@contextmanager
def open_cli(mode: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cli]:
    """The CLI embedded, or with ADAPTERS_URL set against a real server on `db-backend`."""
    if mode == "embedded":
        yield request.getfixturevalue("embedded")
        return
    db, backend = mode.split("-")
    settings = make_settings(tmp_path / "server", db_url_for(db, tmp_path, request), backend, request)
    reg = Registry.from_settings(settings, migrate=True)
    try:
        with ServerThread(create_app(settings, reg, worker=True), admin="bob") as srv:
            yield Cli(
                {
                    "ADAPTERS_URL": srv.url,
                    "ADAPTERS_HOME": str(tmp_path / "client-home"),
                    "ADAPTERS_USER": "bob",
                    "ADAPTERS_TOKEN": srv.token,
                }
            )
    finally:
        reg.close()
