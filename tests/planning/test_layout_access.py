"""`GET /v1/bases/layout` (what `adapters plan` reads over HTTP) answers as `lookup` does: a base in a
private namespace is 404 to a caller who may not read it, and the layout is what was registered."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from registry.access.principal import Principal
from registry.api import create_app
from registry.client.bases import add_base_config
from registry.client.local import LocalClient
from registry.services.context import Registry
from tests.conftest import ServerThread, make_settings
from tests.planning.models import write_config

pytestmark = pytest.mark.server


def test_layout_route_checks_read_access(tmp_path: Path, db_url: str, request: pytest.FixtureRequest) -> None:
    settings = make_settings(tmp_path, db_url, "file", request)
    reg = Registry.from_settings(settings, migrate=True)
    try:
        local = LocalClient(reg, "tester", reg.store, principal=Principal.operator("tester"))
        info = add_base_config(local, write_config("gpt2", tmp_path), ["acme/gpt2"])
        with ServerThread(create_app(settings, reg)) as srv:
            with httpx.Client(base_url=srv.url) as anonymous:
                # acme is private (the default): the base is not there for an anonymous caller.
                assert anonymous.get("/v1/bases/lookup", params={"ref": "acme/gpt2"}).status_code == 404
                resp = anonymous.get("/v1/bases/layout", params={"ref": "acme/gpt2"})
                assert resp.status_code == 404 and resp.json()["code"] == "not_found"
            with httpx.Client(base_url=srv.url, headers=srv.auth) as admin:
                resp = admin.get("/v1/bases/layout", params={"ref": "acme/gpt2"})
                assert resp.status_code == 200
                doc = resp.json()
                assert doc["base"] == admin.get("/v1/bases/lookup", params={"ref": "acme/gpt2"}).json()
                assert doc["base"]["id"] == info.id
        assert doc["config"]["n_embd"] == 128
        assert doc["base"]["module_count"] == len(doc["modules"])
        assert {
            "name": "transformer.h.0.attn.c_attn",
            "kind": "conv1d",
            "in_features": 128,
            "out_features": 384,
        } in doc["modules"]
    finally:
        reg.close()
