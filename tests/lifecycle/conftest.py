"""Helpers for the lifecycle tests: an embedded client on the test's registry, tiny adapters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.access.principal import Principal
from registry.client.local import LocalClient
from registry.client.transfer import push_folder
from registry.entities import PushResult
from registry.services.context import Registry
from storage.local import LocalBlobStore
from tests.access.test_matrix import tiny_adapter


@pytest.fixture
def client(registry: Registry, tmp_path: Path) -> Iterator[LocalClient]:
    """The operator's embedded client on the parametrized registry ({SQLite, PostgreSQL} x {file, S3})."""
    yield LocalClient(
        registry, "tester", LocalBlobStore(tmp_path / "cache"), principal=Principal.operator("tester")
    )


def push(client: LocalClient, tmp_path: Path, repo: str, seed: int, **kw: object) -> PushResult:
    folder = tmp_path / f"adapter-{seed}"
    if not folder.exists():
        tiny_adapter(folder, seed)
    return push_folder(client, folder, repo, **kw)  # type: ignore[arg-type]
