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

MODE_NAMES = ("embedded", "sqlite-file", "sqlite-s3", "postgresql-file", "postgresql-s3")
MODES = resource_params(*MODE_NAMES, server=True)
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


def cli_fixture(*modes: str) -> Any:
    """The `adapters` fixture of a CLI test module: the CLI in each of `modes` (MODE_NAMES or some
    of them), opened by open_cli and marked by what each uses. A module says
    `adapters = cli_fixture("embedded", "postgresql-s3")` instead of writing the fixture again."""

    @pytest.fixture(params=resource_params(*modes, server=True))
    def adapters(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cli]:
        with open_cli(str(request.param), request, tmp_path) as run:
            yield run

    return adapters


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
