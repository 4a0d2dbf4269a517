"""A real server (SQLite + file store, uvicorn on loopback; an admin `alice` with a token) and small real LoRA adapters written
without torch (a valid safetensors file whose q_proj pair matches its adapter_config)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.lora_file import data_bytes, file_digests, seeded
from bench.lora_file import write_lora as write_lora_file
from registry.access.principal import OPERATOR
from registry.api import create_app
from registry.client.http import HttpClient
from registry.services.accounts import add_user, create_token
from registry.services.context import Registry
from tests.conftest import ServerThread, db_url_for, make_settings

BASE = "acme/tiny-base"


def write_lora(folder: Path, seed: int, base: str = BASE, n: int = 64, r: int = 4) -> dict[str, str]:
    """A LoRA adapter (q_proj of layer 0, float32) whose bytes depend on `seed`; returns
    {path: sha256 hex} of its files."""
    write_lora_file(folder, r=r, n=n, data=seeded(seed, data_bytes(r, n)), base=base)
    return file_digests(folder)


@pytest.fixture
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerThread]:
    settings = make_settings(tmp_path / "server", db_url_for("sqlite", tmp_path, request), "file", request)
    reg = Registry.from_settings(settings, migrate=True)
    add_user(reg, "alice", admin=True, principal=OPERATOR)
    secret, _ = create_token(reg, "alice", principal=OPERATOR)
    try:
        with ServerThread(create_app(settings, reg)) as srv:
            srv.token = secret  # type: ignore[attr-defined]
            yield srv
    finally:
        reg.close()


@pytest.fixture
def client(served: ServerThread, tmp_path: Path) -> Iterator[HttpClient]:
    c = HttpClient(served.url, user="alice", cache_dir=tmp_path / "client-cache", token=served.token)  # type: ignore[attr-defined]
    yield c
    c.close()
