"""A real server (SQLite + file store, uvicorn on loopback; an admin `alice` with a token) and small real LoRA adapters written
without torch (a valid safetensors file whose q_proj pair matches its adapter_config)."""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

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
    folder.mkdir(parents=True, exist_ok=True)
    size = r * n * 4
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    header = json.dumps(
        {
            f"{prefix}.lora_A.weight": {"dtype": "F32", "shape": [r, n], "data_offsets": [0, size]},
            f"{prefix}.lora_B.weight": {"dtype": "F32", "shape": [n, r], "data_offsets": [size, 2 * size]},
        }
    ).encode()
    header += b" " * (-len(header) % 8)
    data = (hashlib.sha256(str(seed).encode()).digest() * (2 * size // 32 + 1))[: 2 * size]
    (folder / "adapter_model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + data)
    config = {
        "peft_type": "LORA",
        "r": r,
        "lora_alpha": 8,
        "target_modules": ["q_proj"],
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base,
    }
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


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
