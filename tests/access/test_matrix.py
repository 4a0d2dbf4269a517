"""Who may call what, over real HTTP (uvicorn on loopback), on SQLite and PostgreSQL: every /v1
route and the Hub read routes, for an anonymous caller, a read-only token, a writer of the
namespace, a writer of another namespace, an expired token, a revoked token and an admin. Every
refusal is checked to have changed nothing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from safetensors.numpy import save_file
from sqlalchemy import update

from registry.access import accounts
from registry.api import create_app
from registry.client.http import HttpClient
from registry.client.transfer import push_folder
from registry.db import models as m
from registry.db.engine import unit_of_work
from registry.services.context import Registry
from registry.services.timeutil import now
from tests.conftest import ServerThread, db_url_for, make_settings

WHO = ["anonymous", "read_only", "writer", "other_writer", "expired", "revoked", "admin"]


def tiny_adapter(folder: Path, seed: int) -> Path:
    """A valid LoRA adapter without torch: one module, rank 2."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    save_file(
        {
            f"{prefix}.lora_A.weight": rng.standard_normal((2, 8)).astype(np.float32),
            f"{prefix}.lora_B.weight": rng.standard_normal((8, 2)).astype(np.float32),
        },
        str(folder / "adapter_model.safetensors"),
    )
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": 2,
        "lora_alpha": 4,
        "target_modules": ["q_proj"],
        "base_model_name_or_path": None,
    }
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


@dataclass
class World:
    url: str
    tokens: dict[str, str]
    blob: str
    """A blob of acme/x:1."""
    admin: httpx.Client
    job: int
    """A job the writer submitted."""

    def client(self, who: str) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who in self.tokens else {}
        return httpx.Client(base_url=self.url, timeout=30, headers=headers)

    def state(self) -> Any:
        """Everything a refused request might have changed, as the admin sees it."""
        get = self.admin.get
        return (
            get("/v1/repos").json(),
            get("/v1/versions").json(),
            get("/v1/jobs").json(),
            get("/v1/bases").json(),
            get("/v1/blobs/missing", params={}).status_code,
        )


@pytest.fixture(params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    settings = make_settings(tmp_path, db_url_for(str(request.param), tmp_path, request), "file", request)
    reg = Registry.from_settings(settings, migrate=True)
    try:
        with ServerThread(create_app(settings, reg), admin="root") as srv:
            yield _populate(reg, srv, tmp_path)
    finally:
        reg.close()


def _populate(reg: Registry, srv: ServerThread, tmp_path: Path) -> World:
    accounts.add_user(reg, "wendy")
    accounts.add_user(reg, "otto")
    accounts.grant(reg, "wendy", "acme", "write")
    accounts.grant(reg, "otto", "other", "write")
    accounts.set_namespace_visibility(reg, "pub", True)
    toks = {"admin": srv.token}
    toks["writer"], _ = accounts.create_token(reg, "wendy")
    toks["read_only"], _ = accounts.create_token(reg, "wendy", read_only=True)
    toks["other_writer"], _ = accounts.create_token(reg, "otto")
    toks["expired"], expired = accounts.create_token(reg, "wendy", expires_in=timedelta(hours=1))
    toks["revoked"], revoked = accounts.create_token(reg, "wendy")
    accounts.revoke_token(reg, revoked.id)
    with unit_of_work(reg.sessions) as session:
        session.execute(
            update(m.Token).where(m.Token.id == expired.id).values(expires_at=now() - timedelta(1))
        )
    admin = HttpClient(srv.url, "root", tmp_path / "cache", token=srv.token)
    push_folder(admin, tiny_adapter(tmp_path / "a", 1), "acme/x", aliases=["prod"])
    push_folder(admin, tiny_adapter(tmp_path / "b", 2), "acme/x")
    push_folder(admin, tiny_adapter(tmp_path / "p", 3), "pub/y")
    # The weights: only acme/x:1 lists them (the config's blob is pub/y's too, so public).
    blob = next(f.sha256 for f in admin.resolve("acme/x:1").files if f.path.endswith(".safetensors"))
    world = World(srv.url, toks, blob, httpx.Client(base_url=srv.url, timeout=30, headers=srv.auth), 0)
    merge = {"type": "merge", "params": {"inputs": [{"ref": "acme/x:1", "weight": 1.0}], "into": "acme/m"}}
    with world.client("writer") as w:
        resp = w.post("/v1/jobs", json=merge)
        assert resp.status_code == 202, resp.text
        world.job = resp.json()["id"]
    return world


def read_routes(w: World) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        ("GET", "/v1/resolve", {"params": {"ref": "acme/x@prod"}}),
        ("GET", "/v1/repos/acme/x/versions/1", {}),
        ("GET", f"/v1/blobs/{w.blob}", {}),
        ("HEAD", f"/v1/blobs/{w.blob}", {}),
        ("GET", "/api/models/acme/x", {}),
        ("GET", "/api/models/acme/x/revision/1", {}),
        ("GET", "/api/models/acme/x/tree/main", {}),
        ("GET", "/api/models/acme/x/refs", {}),
        ("GET", "/acme/x/resolve/main/adapter_config.json", {}),
        ("HEAD", "/acme/x/resolve/main/adapter_config.json", {}),
    ]


def write_routes(w: World, blob_body: bytes) -> list[tuple[str, str, dict[str, Any]]]:
    digest = "sha256:" + hashlib.sha256(blob_body).hexdigest()
    version = w.admin.get("/v1/resolve", params={"ref": "acme/x:1"}).json()
    files = [{"path": f["path"], "size": f["size"], "sha256": f["sha256"]} for f in version["files"]]
    return [
        ("PUT", "/v1/repos/acme/x/aliases/prod", {"json": {"version": 2}}),
        ("DELETE", "/v1/repos/acme/x/aliases/prod", {}),
        ("POST", "/v1/repos/acme/x/versions", {"json": {"files": files}}),
        (
            "POST",
            "/v1/jobs",
            {
                "json": {
                    "type": "merge",
                    "params": {"inputs": [{"ref": "acme/x:1", "weight": 1.0}], "into": "acme/n"},
                }
            },
        ),
        ("PUT", f"/v1/blobs/{digest}", {"content": blob_body}),
    ]


# what each caller gets: for reads of the private namespace, writes there, and the rest
EXPECT: dict[str, dict[str, int]] = {
    "anonymous": {"read": 404, "write": 401, "upload": 401, "jobs": 401, "job": 401, "whoami": 401},
    "read_only": {"read": 200, "write": 403, "upload": 403, "jobs": 200, "job": 200, "whoami": 200},
    "writer": {"read": 200, "write": 2, "upload": 2, "jobs": 200, "job": 200, "whoami": 200},
    "other_writer": {"read": 404, "write": 404, "upload": 2, "jobs": 200, "job": 404, "whoami": 200},
    "expired": {"read": 401, "write": 401, "upload": 401, "jobs": 401, "job": 401, "whoami": 401},
    "revoked": {"read": 401, "write": 401, "upload": 401, "jobs": 401, "job": 401, "whoami": 401},
    "admin": {"read": 200, "write": 2, "upload": 2, "jobs": 200, "job": 200, "whoami": 200},
}


def _ok(status: int, expected: int) -> bool:
    return status // 100 == 2 if expected == 2 else status == expected


@pytest.mark.parametrize("who", WHO)
def test_authorization_matrix(world: World, who: str) -> None:
    expect = EXPECT[who]
    before = world.state()
    with world.client(who) as c:
        for method, path, kw in read_routes(world):
            resp = c.request(method, path, **kw)
            assert _ok(resp.status_code, expect["read"]), (who, method, path, resp.status_code, resp.text)
            if resp.status_code == 401:
                assert resp.headers["www-authenticate"].startswith("Bearer")
            if resp.status_code == 404 and path.startswith("/v1/") and method == "GET":
                # exactly what a repository that does not exist gets
                ghost = c.request(method, path.replace("acme/x", "acme/nope"), **kw)
                if "blobs" not in path:
                    assert resp.json()["code"] == ghost.json()["code"] == "not_found"
        # Listings keep only what the caller may read; public namespaces for everyone.
        repos = c.get("/v1/repos")
        if expect["read"] == 401:
            assert repos.status_code == 401
        else:
            names = {r["repo"] for r in repos.json()["items"]}
            assert ("acme/x" in names) == (expect["read"] == 200) and "pub/y" in names
            listed = {v["repo"] for v in c.get("/v1/versions").json()["items"]}
            assert ("acme/x" in listed) == (expect["read"] == 200)
            assert c.get("/v1/resolve", params={"ref": "pub/y"}).status_code == 200
        missing = c.post("/v1/blobs/missing", json={"digests": [world.blob]})
        assert _ok(missing.status_code, expect["upload"]), (who, missing.text)
        if who == "other_writer":  # someone else's blob is "missing" to them: no existence oracle
            assert missing.json()["missing"] == [world.blob]
        assert _ok(c.get("/v1/jobs").status_code, expect["jobs"])
        assert _ok(c.get(f"/v1/jobs/{world.job}").status_code, expect["job"])
        assert _ok(c.get("/v1/whoami").status_code, expect["whoami"])
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200
        if expect["write"] != 2:
            for method, path, kw in write_routes(world, b"new bytes " + who.encode()):
                resp = c.request(method, path, **kw)
                expected = expect["upload"] if "/blobs/" in path else expect["write"]
                assert _ok(resp.status_code, expected), (who, method, path, resp.status_code, resp.text)
            cancel = c.post(f"/v1/jobs/{world.job}/cancel")
            assert cancel.status_code == {"read_only": 403}.get(who, expect["job"]), cancel.text
            assert world.state() == before  # a refusal changes nothing
    if expect["write"] == 2:
        with world.client(who) as c:
            for method, path, kw in write_routes(world, b"new bytes " + who.encode()):
                resp = c.request(method, path, **kw)
                assert resp.status_code // 100 == 2, (who, method, path, resp.status_code, resp.text)
            assert c.post(f"/v1/jobs/{world.job}/cancel").status_code == 200


def test_blob_of_a_private_version_cannot_be_claimed_by_digest(world: World) -> None:
    """A writer elsewhere who knows a digest cannot commit it (and so read it) without its bytes."""
    version = world.admin.get("/v1/resolve", params={"ref": "acme/x:1"}).json()
    files = [{"path": f["path"], "size": f["size"], "sha256": f["sha256"]} for f in version["files"]]
    with world.client("other_writer") as c:
        resp = c.post("/v1/repos/other/steal/versions", json={"files": files})
        assert resp.status_code == 409 and resp.json()["code"] == "blob_missing", resp.text
        assert c.get(f"/v1/blobs/{world.blob}").status_code == 404


def test_bad_credentials_are_401_even_on_public_reads(world: World) -> None:
    for header in ("Bearer adreg_" + "0" * 43, "Basic dXNlcjpwYXNz", "Bearer", "Bearer hf_x"):
        with httpx.Client(base_url=world.url, headers={"Authorization": header}) as c:
            resp = c.get("/v1/resolve", params={"ref": "pub/y"})
            assert resp.status_code == 401 and resp.json()["code"] == "unauthenticated"
            assert resp.headers["www-authenticate"].startswith("Bearer")
            assert "adreg_0000" not in resp.text
    with httpx.Client(base_url=world.url) as anon:
        assert anon.get("/v1/resolve", params={"ref": "pub/y"}).status_code == 200
        hub = anon.get("/api/models/pub/y")
        assert hub.status_code == 200 and hub.json()["private"] is False
        missing = anon.get("/api/models/acme/x")
        assert missing.status_code == 404 and missing.headers["x-error-code"] == "RepoNotFound"
