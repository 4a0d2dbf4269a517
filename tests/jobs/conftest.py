"""Job tests: the queue on a real database (SQLite and PostgreSQL), with a local blob store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.config import Settings
from registry.services.context import Registry


@pytest.fixture
def job_settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(home=tmp_path / "home", database_url=db_url, user="tester", job_lease_s=30)


@pytest.fixture
def job_registry(job_settings: Settings) -> Iterator[Registry]:
    reg = Registry.from_settings(job_settings, migrate=True)
    yield reg
    reg.close()
