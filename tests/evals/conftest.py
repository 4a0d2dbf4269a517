"""Fixtures for evaluations, rankings and lineage: a registry on SQLite or PostgreSQL (file blobs),
and principals with given rights."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.access import authentication
from registry.access.principal import OPERATOR, Principal
from registry.config import Settings
from registry.services import accounts
from registry.services.context import Registry
from tests.conftest import db_url_for, make_settings, resource_params


@pytest.fixture(params=resource_params("sqlite", "postgresql"))
def ev_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    return make_settings(tmp_path, db_url_for(str(request.param), tmp_path, request), "file", request)


@pytest.fixture
def reg(ev_settings: Settings) -> Iterator[Registry]:
    registry = Registry.from_settings(ev_settings, migrate=True)
    yield registry
    registry.close()


def user(reg: Registry, name: str, grants: dict[str, str], read_only: bool = False) -> Principal:
    """A user with `grants` (namespace -> role), as their token authenticates them."""
    accounts.add_user(reg, name, principal=OPERATOR)
    for namespace, role in grants.items():
        accounts.grant(reg, name, namespace, role, principal=OPERATOR)
    secret, _ = accounts.create_token(reg, name, read_only=read_only, principal=OPERATOR)
    return authentication.authenticate(reg, secret)


from tests.cli.conftest import embedded  # noqa: E402,F401  (the CLI fixture, for open_cli)
