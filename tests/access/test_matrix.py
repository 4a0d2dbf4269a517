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

from registry.access import authentication
from registry.access.principal import OPERATOR
from registry.api import create_app
from registry.client.http import HttpClient
from registry.client.transfer import push_folder
from registry.db import models as m
from registry.db.engine import unit_of_work
from registry.services import accounts
from registry.services.context import Registry
from registry.services.timeutil import now
from tests.conftest import ServerThread, db_url_for, make_settings, resource_params

pytestmark = pytest.mark.server

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


SECRET_FP = "sha256:" + "5" * 64
"""The fingerprint of the admin's private base corp/secret-base (q_proj 16 -> 16: no adapter here fits)."""
ACME_FP = "sha256:" + "a" * 64
"""acme/base: q_proj 8 -> 8, the tiny adapters' base."""
BARE_FP = "sha256:" + "b" * 64
"""A base registered without names (the operator's and global admins' only)."""
PLAIN_FP = "sha256:" + "c" * 64
"""A base with an un-namespaced name, `plain-base`."""
Q_PROJ = "model.layers.0.self_attn.q_proj"


def base_body(names: list[str], fingerprint: str | None, size: int = 8, **extra: Any) -> dict[str, Any]:
    return {
        "names": [{"name": n} for n in names],
        "fingerprint": fingerprint,
        "structure_signature": "sha256:" + "1" * 64,
        "modules": [{"name": Q_PROJ, "kind": "linear", "in_features": size, "out_features": size}],
        **extra,
    }


@dataclass
class World:
    url: str
    tokens: dict[str, str]
    blob: str
    """A blob of acme/x:1."""
    admin: httpx.Client
    job: int
    """A job the writer submitted."""
    spare_token: int = 0
    """A token of wendy's that nobody uses (revocation target)."""
    digest: str = ""
    """acme/x:1's manifest digest."""
    reg: Registry | None = None

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
            get("/v1/users").json(),
            [{k: v for k, v in t.items() if k != "last_used_at"} for t in get("/v1/tokens").json()],
            get("/v1/namespaces").json(),
            [get("/v1/bases/lookup", params={"ref": fp}).json() for fp in (SECRET_FP, BARE_FP, PLAIN_FP)],
        )


@pytest.fixture(params=resource_params("sqlite", "postgresql"))
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    settings = make_settings(tmp_path, db_url_for(str(request.param), tmp_path, request), "file", request)
    reg = Registry.from_settings(settings, migrate=True)
    try:
        with ServerThread(create_app(settings, reg), admin="root") as srv:
            yield _populate(reg, srv, tmp_path)
    finally:
        reg.close()


def _populate(reg: Registry, srv: ServerThread, tmp_path: Path) -> World:
    accounts.add_user(reg, "wendy", principal=OPERATOR)
    accounts.add_user(reg, "otto", principal=OPERATOR)
    accounts.grant(reg, "wendy", "acme", "write", principal=OPERATOR)
    accounts.grant(reg, "otto", "other", "write", principal=OPERATOR)
    accounts.set_namespace_visibility(reg, "pub", True, principal=OPERATOR)
    toks = {"admin": srv.token}
    toks["writer"], _ = accounts.create_token(reg, "wendy", principal=OPERATOR)
    toks["read_only"], _ = accounts.create_token(reg, "wendy", read_only=True, principal=OPERATOR)
    toks["other_writer"], _ = accounts.create_token(reg, "otto", principal=OPERATOR)
    toks["expired"], expired = accounts.create_token(
        reg, "wendy", expires_in=timedelta(hours=1), principal=OPERATOR
    )
    toks["revoked"], revoked = accounts.create_token(reg, "wendy", principal=OPERATOR)
    accounts.revoke_token(reg, revoked.id, principal=OPERATOR)
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
    world.reg = reg
    world.spare_token = accounts.create_token(reg, "wendy", name="spare", principal=OPERATOR)[1].id
    world.digest = admin.resolve("acme/x:1").digest
    for body in (
        base_body(["acme/base"], ACME_FP),
        base_body(["corp/secret-base"], SECRET_FP, size=16),
        base_body([], BARE_FP),
        base_body(["plain-base"], PLAIN_FP),
    ):
        resp = world.admin.post("/v1/bases", json=body)
        assert resp.status_code == 201, resp.text
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


# ---------------------------------------------------------------- the other routes
# (method, path, kwargs, {caller: status}); 2: any 2xx. Run in this order: refusals first.
A, RO, W, OW, E, R, AD = WHO


def _codes(anonymous: int, read_only: int, writer: int, other: int, admin: int) -> dict[str, int]:
    return {A: anonymous, RO: read_only, W: writer, OW: other, E: 401, R: 401, AD: admin}


def more_routes(w: World) -> list[tuple[str, str, dict[str, Any], dict[str, int]]]:
    return [
        ("DELETE", "/v1/repos/acme/x/versions/2", {}, _codes(401, 403, 2, 404, 2)),
        ("POST", "/v1/gc", {"json": {"dry_run": True}}, _codes(401, 403, 403, 403, 200)),
        ("GET", "/v1/audit", {}, _codes(401, 403, 403, 403, 200)),
        (
            "POST",
            "/v1/bases",
            {"json": base_body(["acme/new"], "sha256:" + "e" * 64)},
            _codes(401, 403, 201, 404, 201),
        ),
        ("GET", "/v1/bases", {}, _codes(200, 200, 200, 200, 200)),
        ("GET", "/v1/bases/lookup", {"params": {"ref": "acme/base"}}, _codes(404, 200, 200, 404, 200)),
        ("GET", "/v1/bases/lookup", {"params": {"ref": ACME_FP}}, _codes(404, 200, 200, 404, 200)),
        ("POST", "/v1/fit", {"json": {"base": "acme/base"}}, _codes(404, 200, 200, 404, 200)),
        ("POST", "/v1/users", {"json": {"name": "newbie"}}, _codes(401, 403, 403, 403, 201)),
        ("GET", "/v1/users", {}, _codes(401, 403, 403, 403, 200)),
        ("PUT", "/v1/grants/otto/acme", {"json": {"role": "read"}}, _codes(401, 403, 403, 404, 200)),
        ("DELETE", "/v1/grants/otto/acme", {}, _codes(401, 403, 403, 404, 200)),
        ("POST", "/v1/tokens", {"json": {"user": "wendy"}}, _codes(401, 403, 201, 403, 201)),
        ("POST", "/v1/tokens", {"json": {}}, _codes(401, 403, 201, 201, 201)),
        ("GET", "/v1/tokens", {"params": {"user": "wendy"}}, _codes(401, 200, 200, 403, 200)),
        ("GET", "/v1/tokens", {}, _codes(401, 200, 200, 200, 200)),
        ("POST", f"/v1/tokens/{w.spare_token}/revoke", {}, _codes(401, 403, 200, 404, 200)),
        ("PUT", "/v1/namespaces/acme", {"json": {"public": False}}, _codes(401, 403, 403, 404, 200)),
        ("GET", "/v1/namespaces", {}, _codes(200, 200, 200, 200, 200)),
        ("GET", "/v1/bases/layout", {"params": {"ref": "acme/base"}}, _codes(404, 200, 200, 404, 200)),
        ("GET", "/v1/evals", {"params": {"ref": "acme/x:1"}}, _codes(404, 200, 200, 404, 200)),
        ("GET", "/v1/repos/acme/x/versions/1/evals", {}, _codes(404, 200, 200, 404, 200)),
        (
            "POST",
            "/v1/evals",
            {"params": {"ref": "acme/x:1"}, "json": {"scores": [{"metric": "acc", "value": 0.5}]}},
            _codes(401, 403, 201, 404, 201),
        ),
        (
            "POST",
            "/v1/repos/acme/x/versions/1/evals",
            {"json": {"scores": [{"metric": "acc", "value": 0.6}]}},
            _codes(401, 403, 201, 404, 201),
        ),
        (
            "GET",
            "/v1/leaderboard",
            {"params": {"base": "acme/base", "metric": "acc"}},
            _codes(404, 200, 200, 404, 200),
        ),
        (
            "GET",
            "/v1/pareto",
            {"params": {"base": "acme/base", "metric": "acc"}},
            _codes(404, 200, 200, 404, 200),
        ),
        ("GET", "/v1/metrics", {"params": {"base": "acme/base"}}, _codes(404, 200, 200, 404, 200)),
        (
            "GET",
            "/v1/compare",
            {"params": {"ref": ["acme/x:1", "acme/x:1"]}},
            _codes(404, 200, 200, 404, 200),
        ),
        ("GET", "/v1/lineage/acme/x:1", {}, _codes(404, 200, 200, 404, 200)),
        ("GET", "/v1/lineage/acme/base", {}, _codes(404, 200, 200, 404, 200)),
        ("DELETE", "/v1/repos/acme/x", {}, _codes(401, 403, 2, 404, 2)),
    ]


@pytest.mark.parametrize("who", WHO)
def test_authorization_matrix_other_routes(world: World, who: str) -> None:
    routes = more_routes(world)
    before = world.state()
    with world.client(who) as c:
        for method, path, kw, codes in routes:
            if codes[who] in (2, 200, 201):
                continue
            resp = c.request(method, path, **kw)
            assert resp.status_code == codes[who], (who, method, path, resp.status_code, resp.text)
            if resp.status_code == 401:
                assert resp.headers["www-authenticate"].startswith("Bearer")
            if resp.status_code == 404 and "acme" in path + json.dumps(kw):
                assert resp.json()["code"] == "not_found"
                asked = path.replace("/repos/acme/x/versions/1/", "acme/x:1") + json.dumps(kw)
                assert "wendy" not in resp.text  # nothing beyond what the caller asked is echoed
                assert "acme/x:1" not in resp.text or "acme/x:1" in asked
        assert world.state() == before  # a refusal changes nothing
        for method, path, kw, codes in routes:
            if codes[who] not in (2, 200, 201):
                continue
            resp = c.request(method, path, **kw)
            assert _ok(resp.status_code, codes[who]), (who, method, path, resp.status_code, resp.text)
            if path == "/v1/bases" and method == "GET":  # only the names the caller may read
                names = {n["name"] for b in resp.json() for n in b["names"]}
                assert "corp/secret-base" not in names or who == AD
                assert ("acme/base" in names) == (who in (RO, W, AD))
                assert BARE_FP not in resp.text or who == AD
            if path == "/v1/namespaces":
                assert "acme" not in {n["name"] for n in resp.json()} or who in (RO, W, AD)


# ---------------------------------------------------------------- regressions
def upload(c: httpx.Client, folder: Path) -> list[dict[str, Any]]:
    """Upload a folder's files as `c`; their entries for a commit."""
    files = []
    for f in sorted(folder.iterdir()):
        body = f.read_bytes()
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        resp = c.put(f"/v1/blobs/{digest}", content=body)
        assert resp.status_code // 100 == 2, resp.text
        files.append({"path": f.name, "size": len(body), "sha256": digest})
    return files


def test_a_writer_cannot_take_over_a_base_by_its_fingerprint(world: World, tmp_path: Path) -> None:
    """Registering names (or files) on an existing base needs write on the base's names. Its
    fingerprint is no one's (issue 21): a name of one's own for the same weights is a base of
    one's own, and tells nothing of the other (tests/bases/test_shared_fingerprints.py)."""
    before = world.state()
    with world.client(OW) as c:
        # Without names (a nameless base): global admins only, whichever base the fingerprint is.
        files = upload(c, tiny_adapter(tmp_path / "t7", 7))
        for fp in (PLAIN_FP, BARE_FP, SECRET_FP, "sha256:" + "9" * 64):
            resp = c.post("/v1/bases", json=base_body([], fp, files=files))
            assert resp.status_code == 403, (fp, resp.text)
    assert world.state() == before
    for who, name, fp in (
        (OW, "other/x", SECRET_FP),  # another namespace's private base's weights
        (W, "acme/plain", PLAIN_FP),  # a base it may read (an un-namespaced name) but not write
        (W, "acme/y", SECRET_FP),
    ):
        with world.client(who) as c:
            resp = c.post("/v1/bases", json=base_body([name], fp))
            assert resp.status_code == 201 and [n["name"] for n in resp.json()["names"]] == [name], resp.text
            assert "corp" not in resp.text and "plain-base" not in resp.text
    for ref, names in ((SECRET_FP, ["corp/secret-base"]), ("plain-base", ["plain-base"])):
        kept = world.admin.get("/v1/bases/lookup", params={"ref": ref}).json()
        assert [n["name"] for n in kept["names"]] == names and kept["files"] is None
    # A base whose names it writes: another name is added (registration stays idempotent).
    with world.client(W) as c:
        resp = c.post("/v1/bases", json=base_body(["acme/base-2"], ACME_FP))
        assert resp.status_code == 201, resp.text
        assert [n["name"] for n in resp.json()["names"]] == ["acme/base", "acme/base-2"]
    assert world.admin.post("/v1/bases", json=base_body(["corp/secret-base"], SECRET_FP)).status_code == 201


def push(c: httpx.Client, folder: Path, repo: str, **extra: Any) -> httpx.Response:
    return c.post(f"/v1/repos/{repo}/versions", json={"files": upload(c, folder), **extra})


def test_a_push_cannot_link_to_a_base_it_may_not_read(world: World, tmp_path: Path) -> None:
    folder = tiny_adapter(tmp_path / "t11", 11)
    # The admin's push is refused: the adapter does not fit the secret base.
    refused = push(world.admin, folder, "acme/z", base="corp/secret-base")
    assert refused.status_code == 422 and refused.json()["code"] == "shape_mismatch", refused.text
    with world.client(W) as c:
        for base in ("corp/secret-base", SECRET_FP, BARE_FP, "corp/nope"):
            for force in (False, True):
                resp = push(c, folder, "acme/z", base=base, force=force)
                assert resp.status_code // 100 == 2, (base, resp.text)
                info = resp.json()["info"]
                assert info["base_linked"] is False and info["base_fingerprint"] is None, base
                assert info["fit_override"] is None
                assert "shape_mismatch" not in resp.text and "16 -> 16" not in resp.text
        linked = push(c, tiny_adapter(tmp_path / "t15", 15), "acme/z", base="acme/base").json()["info"]
        assert linked["base_fingerprint"] == ACME_FP


def test_lineage_tells_nothing_of_versions_the_reader_may_not_read(world: World, tmp_path: Path) -> None:
    bogus = "sha256:" + "0" * 64
    parents = [
        {"ref": "acme/x:1", "digest": world.digest},
        {"ref": "acme/x:1", "digest": bogus},
        {"ref": "acme/x", "digest": world.digest},
        {"digest": world.digest},
        {"digest": bogus},
    ]
    lineage = {"kind": "merge", "parents": parents}
    with world.client(OW) as c:
        resp = push(c, tiny_adapter(tmp_path / "t12", 12), "other/z", lineage=lineage)
        assert resp.status_code == 201, resp.text
        # Claims are checked with the pusher's rights (services/lineage_edges.py): to otto, who may
        # not read acme, a real parent there and a bogus digest are alike, both unverified.
        claimed = {
            "kind": "merge",
            "parents": [{**p, "unverified": True} for p in parents],
            "unverified": sorted({world.digest, bogus}),
        }
        assert resp.json()["info"]["lineage"] == claimed
        assert c.get("/v1/resolve", params={"ref": "other/z:1"}).json()["lineage"] == claimed
    # Whoever may read acme sees what is gone.
    seen = world.admin.get("/v1/resolve", params={"ref": "other/z:1"}).json()["lineage"]["parents"]
    assert [p.get("deleted", False) for p in seen] == [False, True, False, False, True]
    with world.client(W) as c:
        resp = push(c, tiny_adapter(tmp_path / "t13", 13), "acme/l", lineage=lineage)
        # acme is readable: the first three are checked; a parent without ref is found in acme
        # (present) or left as recorded (it may be in a namespace wendy does not read).
        seen = resp.json()["info"]["lineage"]["parents"]
        assert [p.get("deleted", False) for p in seen] == [False, True, False, False, False]
        assert [p.get("unverified", False) for p in seen] == [False, True, False, False, True]
        assert seen[4] == {**parents[4], "unverified": True}


def test_base_names_in_namespaces_the_reader_may_not_read_are_not_shown(world: World, tmp_path: Path) -> None:
    shared = "sha256:" + "d" * 64
    resp = world.admin.post("/v1/bases", json=base_body(["corp/hidden", "pub/shared"], shared))
    assert resp.status_code == 201, resp.text
    resp = push(world.admin, tiny_adapter(tmp_path / "t14", 14), "pub/z", base="pub/shared")
    assert resp.status_code == 201 and resp.json()["info"]["base_fingerprint"] == shared, resp.text
    for who in (A, W, OW):
        with world.client(who) as c:
            for answer in (
                c.get("/v1/bases/lookup", params={"ref": "pub/shared"}),
                c.get("/v1/bases/lookup", params={"ref": shared}),
                c.get("/v1/bases"),
                c.post("/v1/fit", json={"base": "pub/shared"}),
                c.post("/v1/fit", json={"base": "acme/base"}) if who == W else c.get("/healthz"),
            ):
                assert answer.status_code == 200, (who, answer.text)
                assert "corp/" not in answer.text, (who, answer.text)
            items = c.post("/v1/fit", json={"base": "pub/shared"}).json()["items"]
            assert {i["base_model"] for i in items if i["repo"] == "pub/z"} == {"pub/shared"}
    full = world.admin.get("/v1/bases/lookup", params={"ref": shared}).json()
    assert [n["name"] for n in full["names"]] == ["corp/hidden", "pub/shared"]


def test_a_base_without_names_is_for_global_admins_only(world: World) -> None:
    for who in (A, RO, W, OW):
        with world.client(who) as c:
            assert c.get("/v1/bases/lookup", params={"ref": BARE_FP}).status_code == 404
            assert c.post("/v1/fit", json={"base": BARE_FP}).status_code == 404
            assert BARE_FP not in c.get("/v1/bases").text
    assert world.admin.get("/v1/bases/lookup", params={"ref": BARE_FP}).status_code == 200


def test_a_token_never_mints_a_longer_lived_one(world: World) -> None:
    short = world.admin.post("/v1/tokens", json={"user": "wendy", "expires_in_s": 3600})
    assert short.status_code == 201, short.text
    limit = short.json()["expires_at"]
    with httpx.Client(base_url=world.url, headers={"Authorization": f"Bearer {short.json()['token']}"}) as c:
        for body in ({}, {"expires_in_s": 30 * 86400}, {"name": "x"}):
            made = c.post("/v1/tokens", json=body)
            assert made.status_code == 201, made.text
            assert made.json()["expires_at"] is not None and made.json()["expires_at"] <= limit
        shorter = c.post("/v1/tokens", json={"expires_in_s": 60}).json()["expires_at"]
        assert shorter < limit
    with world.client(W) as c:  # a token without expiry makes one without
        assert c.post("/v1/tokens", json={}).json()["expires_at"] is None


def test_a_job_principal_carries_its_token_expiry(world: World) -> None:
    from datetime import UTC, datetime

    short = world.admin.post("/v1/tokens", json={"user": "wendy", "expires_in_s": 3600}).json()
    reg = world.reg
    assert reg is not None
    wendy = next(u.id for u in accounts.list_users(reg, principal=OPERATOR) if u.name == "wendy")
    with unit_of_work(reg.sessions) as session:
        p = authentication.job_principal(session, wendy, short["id"], "wendy")
    assert p.expires_at == datetime.fromisoformat(short["expires_at"]).astimezone(UTC)
    assert authentication.authenticate(reg, short["token"]).expires_at == p.expires_at


def test_cancelling_as_anonymous_tells_nothing(world: World) -> None:
    with world.client(A) as c:
        for job in (world.job, 999_999):
            resp = c.post(f"/v1/jobs/{job}/cancel")
            assert resp.status_code == 401 and resp.json()["code"] == "unauthenticated", resp.text


def test_the_access_log_keeps_no_query_string() -> None:
    import logging

    from cli.server import StripQuery, access_log_config

    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "PUT", "/lfs/upload/sha?sig=SECRET&exp=1", "1.1", 200),
        None,
    )
    assert StripQuery().filter(record)
    assert "SECRET" not in record.getMessage() and "/lfs/upload/sha" in record.getMessage()
    config = access_log_config()
    assert config["filters"]["strip_query"]["()"] is StripQuery
    assert "strip_query" in config["loggers"]["uvicorn.access"]["filters"]
