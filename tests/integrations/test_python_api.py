"""The Python API (registry.connect() -> AdapterRegistry): the CLI's client and functions, embedded
and against a real server, with the registry's typed errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import registry
from registry.api import create_app
from registry.errors import UnknownBase
from registry.facade import AdapterRegistry
from registry.services.context import Registry
from tests.conftest import ServerThread, db_url_for, make_settings

pytestmark = pytest.mark.server


@pytest.fixture(params=["embedded", "sqlite-server"])
def reg(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[AdapterRegistry]:
    for name in ("ADAPTERS_URL", "ADAPTERS_TOKEN", "ADAPTERS_DATABASE_URL", "ADAPTERS_BLOB_URL"):
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("ADAPTERS_HOME", str(tmp_path / "client-home"))
    if request.param == "embedded":
        with registry.connect() as opened:
            yield opened
        return
    settings = make_settings(tmp_path / "server", db_url_for("sqlite", tmp_path, request), "file", request)
    server = Registry.from_settings(settings, migrate=True)
    try:
        with (
            ServerThread(create_app(settings, server, worker=True), admin="bob") as srv,
            registry.connect(srv.url, token=srv.token, user="bob") as opened,
        ):
            yield opened
    finally:
        server.close()


def test_python_api_round_trip(reg: AdapterRegistry, adapters_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(UnknownBase) as typo:
        reg.push(adapters_dir / "lora_a", "acme/legal", base="tiny-lama")
    assert typo.value.suggestions == []
    fingerprint = reg.add_base(adapters_dir / "base", "acme/tiny-llama", upload=True).fingerprint
    with pytest.raises(UnknownBase) as close:
        reg.push(adapters_dir / "lora_a", "acme/legal", base="acme/tiny-lama")
    assert close.value.suggestions == ["acme/tiny-llama"]

    a = reg.push(adapters_dir / "lora_a", "acme/legal", base="acme/tiny-llama", evals={"accuracy": 0.7})
    b = reg.push(adapters_dir / "lora_b", "acme/medical", base="acme/tiny-llama", evals=["accuracy=0.9"])
    assert a.info.base_fingerprint == b.info.base_fingerprint == fingerprint
    by_folder = reg.push(adapters_dir / "lora_a", "acme/folder", base=str(adapters_dir / "base"))
    assert by_folder.info.base_fingerprint == fingerprint
    assert by_folder.base_note is not None and "linked by fingerprint" in by_folder.base_note

    assert reg.alias("acme/legal:1", "production").version == 1
    assert reg.resolve("acme/legal@production").digest == a.digest
    assert {v.ref for v in reg.list()} == {"acme/legal:1", "acme/medical:1", "acme/folder:1"}
    history = reg.eval_add("acme/legal:1", {"accuracy": 0.95}, note="rerun")
    assert history.records[0].note == "rerun"
    board = reg.leaderboard("acme/tiny-llama", "accuracy")
    assert [(r.ref, r.score) for r in board.rows] == [("acme/legal:1", 0.95), ("acme/medical:1", 0.9)]
    assert {i.ref for i in reg.fit("acme/tiny-llama").items} >= {"acme/legal:1", "acme/medical:1"}

    merged = reg.merge(
        {"acme/legal": 0.5, "acme/medical": 0.5}, into="acme/mix", method="cat", alias=["staging"]
    )
    assert merged.ref == "acme/mix:1" and reg.resolve("acme/mix@staging").derived
    out = reg.pull("acme/legal@production", tmp_path / "pulled")
    assert (out / "adapter_model.safetensors").read_bytes() == (
        adapters_dir / "lora_a" / "adapter_model.safetensors"
    ).read_bytes()
