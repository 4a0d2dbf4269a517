"""A token's narrowing applies to every resource, and "not found" tells nothing (issue 21), over
real HTTP on SQLite and PostgreSQL: a token narrowed to namespaces reaches only the jobs all of
whose namespaces (read or written) are among its own, and manages only tokens no wider than
itself; a private repository that exists answers the lineage and evaluation routes exactly as
one that does not."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.access.principal import OPERATOR
from registry.api import create_app
from registry.client.http import HttpClient
from registry.client.transfer import push_folder
from registry.services import accounts
from registry.services.context import Registry
from tests.access.test_matrix import base_body, tiny_adapter
from tests.conftest import ServerThread, db_url_for, make_settings, resource_params

pytestmark = pytest.mark.server

SCOPES: dict[str, list[str] | None] = {
    "full": None,
    "other": ["other"],
    "acme": ["acme"],
    "both": ["acme", "other"],
    "none": [],
}
"""wendy's tokens (she writes acme and other), by the namespaces they are narrowed to."""


@dataclass
class Scoped:
    url: str
    admin: httpx.Client
    tokens: dict[str, str]
    """wendy's secrets by SCOPES key, and otto's (`otto`, a writer of other only)."""
    token_ids: dict[str, int]

    def client(self, who: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who is not None else {}
        return httpx.Client(base_url=self.url, timeout=30, headers=headers)


@pytest.fixture(params=resource_params("sqlite", "postgresql"))
def scoped(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Scoped]:
    settings = make_settings(tmp_path, db_url_for(str(request.param), tmp_path, request), "file", request)
    reg = Registry.from_settings(settings, migrate=True)
    try:
        with ServerThread(create_app(settings, reg), admin="root") as srv:
            yield _populate(reg, srv, tmp_path)
    finally:
        reg.close()


def _populate(reg: Registry, srv: ServerThread, tmp_path: Path) -> Scoped:
    accounts.add_user(reg, "wendy", principal=OPERATOR)
    accounts.add_user(reg, "otto", principal=OPERATOR)
    accounts.grant(reg, "wendy", "acme", "write", principal=OPERATOR)
    accounts.grant(reg, "wendy", "other", "write", principal=OPERATOR)
    accounts.grant(reg, "otto", "other", "write", principal=OPERATOR)
    accounts.set_namespace_visibility(reg, "pub", True, principal=OPERATOR)
    tokens: dict[str, str] = {}
    ids: dict[str, int] = {}
    for key, scope in SCOPES.items():
        tokens[key], info = accounts.create_token(
            reg, "wendy", namespaces=scope, name=key, principal=OPERATOR
        )
        ids[key] = info.id
    tokens["otto"], _ = accounts.create_token(reg, "otto", principal=OPERATOR)
    admin = HttpClient(srv.url, "root", tmp_path / "cache", token=srv.token)
    push_folder(admin, tiny_adapter(tmp_path / "a", 1), "acme/x", aliases=["prod"])
    push_folder(admin, tiny_adapter(tmp_path / "p", 2), "pub/y")
    return Scoped(srv.url, httpx.Client(base_url=srv.url, timeout=30, headers=srv.auth), tokens, ids)


def merge(inputs: list[str], into: str) -> dict[str, Any]:
    return {"type": "merge", "params": {"inputs": [{"ref": r, "weight": 1.0} for r in inputs], "into": into}}


JOBS = {
    "in_acme": merge(["acme/x:1"], "acme/m"),
    "acme_to_other": merge(["acme/x:1"], "other/m"),
    "in_other": merge(["other/y:1"], "other/n"),
    # An export reads its base too: a base named in acme is acme's.
    "base_in_acme": {
        "type": "export",
        "params": {"ref": "other/y:1", "base": "acme/base", "into": "other/exported"},
    },
}
SEES = {
    "full": set(JOBS),
    "other": {"in_other"},
    "acme": {"in_acme"},
    "both": set(JOBS),
    "none": set(),
}
"""Which of wendy's jobs each of her tokens reaches."""


def test_a_narrowed_token_reaches_only_jobs_within_its_namespaces(scoped: Scoped) -> None:
    ids: dict[str, int] = {}
    with scoped.client("full") as c:
        for name, body in JOBS.items():
            resp = c.post("/v1/jobs", json=body)
            assert resp.status_code == 202, resp.text
            ids[name] = resp.json()["id"]
    missing = scoped.admin.get("/v1/jobs/999999")
    assert missing.status_code == 404
    for key, seen in SEES.items():
        with scoped.client(key) as c:
            listed = {j["id"] for j in c.get("/v1/jobs").json()}
            assert listed == {ids[n] for n in seen}, key
            assert {j["id"] for j in c.get("/v1/jobs", params={"limit": 1}).json()} <= listed
            for name, job in ids.items():
                got = c.get(f"/v1/jobs/{job}")
                if name in seen:
                    assert got.status_code == 200, (key, name, got.text)
                else:  # as for no such job: the same status, code and message shape
                    assert got.status_code == 404, (key, name, got.text)
                    assert _shape(got.json()) == _shape(missing.json(), "999999", str(job))
    # Refused cancellations change nothing; one within the token's namespaces goes through.
    with scoped.client("other") as c:
        for name in ("in_acme", "acme_to_other", "base_in_acme"):
            resp = c.post(f"/v1/jobs/{ids[name]}/cancel")
            assert resp.status_code == 404 and resp.json()["code"] == "not_found", (name, resp.text)
        assert c.post(f"/v1/jobs/{ids['in_other']}/cancel").json()["status"] == "cancelled"
    with scoped.client("none") as c:
        assert c.post(f"/v1/jobs/{ids['in_acme']}/cancel").status_code == 404
    states = {j["id"]: j["status"] for j in scoped.admin.get("/v1/jobs").json()}
    assert states == {job: "cancelled" if n == "in_other" else "queued" for n, job in ids.items()}


MANAGES = {
    "full": set(SCOPES),
    "other": {"other", "none"},
    "acme": {"acme", "none"},
    "both": {"other", "acme", "both", "none"},
    "none": {"none"},
}
"""Which of wendy's tokens each of her tokens lists and may revoke: none wider than itself."""


def test_a_narrowed_token_manages_only_tokens_no_wider_than_itself(scoped: Scoped, tmp_path: Path) -> None:
    names = {v: k for k, v in scoped.token_ids.items()}
    missing = scoped.admin.post("/v1/tokens/999999/revoke")
    assert missing.status_code == 404
    for key, managed in MANAGES.items():
        with scoped.client(key) as c:
            assert {names[t["id"]] for t in c.get("/v1/tokens").json()} == managed, key
            assert {names[t["id"]] for t in c.get("/v1/tokens", params={"user": "wendy"}).json()} == managed
        # The client the CLI's `adapters token list` uses reaches the same.
        client = HttpClient(scoped.url, "wendy", tmp_path / "cache", token=scoped.tokens[key])
        assert {names[t.id] for t in client.list_tokens()} == managed
    with scoped.client("other") as c:
        for wider in ("full", "acme", "both"):
            token = scoped.token_ids[wider]
            resp = c.post(f"/v1/tokens/{token}/revoke")
            assert resp.status_code == 404, (wider, resp.text)
            assert _shape(resp.json()) == _shape(missing.json(), "999999", str(token))
        with scoped.client("full") as full:  # still valid
            assert full.get("/v1/whoami").status_code == 200
        assert c.post(f"/v1/tokens/{scoped.token_ids['none']}/revoke").json()["revoked_at"] is not None
    with scoped.client("both") as c:
        assert c.post(f"/v1/tokens/{scoped.token_ids['acme']}/revoke").status_code == 200
        assert c.post(f"/v1/tokens/{scoped.token_ids['full']}/revoke").status_code == 404
    revoked = {
        t["name"] for t in scoped.admin.get("/v1/tokens", params={"user": "wendy"}).json() if t["revoked_at"]
    }
    assert revoked == {"none", "acme"}


def _shape(answer: dict[str, Any], old: str | None = None, new: str = "") -> str:
    """A refusal's JSON, its request id aside, with `old` read as `new` (the name it echoes)."""
    text = json.dumps({k: v for k, v in answer.items() if k != "request_id"}, sort_keys=True)
    return text if old is None else text.replace(old, new)


def _existence_probes(real: str, ghost: str) -> list[tuple[str, dict[str, Any]]]:
    """Requests naming private repository `real` (or `ghost`, which does not exist)."""
    return [
        (f"/v1/lineage/{real}:1", {}),
        (f"/v1/lineage/{real}", {}),
        (f"/v1/lineage/{real}@prod", {}),
        ("/v1/evals", {"ref": f"{real}:1"}),
        ("/v1/evals", {"ref": real}),
        (f"/v1/repos/{real}/versions/1/evals", {}),
        ("/v1/compare", {"ref": [f"{real}:1", "pub/y:1"]}),
        ("/v1/compare", {"ref": ["pub/y:1", f"{real}@prod"]}),
    ]


@pytest.mark.parametrize("who", [None, "otto", "other"])
def test_a_private_repository_answers_as_a_missing_one(scoped: Scoped, who: str | None) -> None:
    real, ghost = "acme/x", "acme/nope"
    assert scoped.admin.get(f"/v1/lineage/{real}:1").status_code == 200
    with scoped.client(who) as c:
        for (path, params), (ghost_path, ghost_params) in zip(
            _existence_probes(real, ghost), _existence_probes(ghost, real), strict=True
        ):
            got = c.get(path, params=params)
            absent = c.get(ghost_path, params=ghost_params)
            assert got.status_code == absent.status_code == 404, (path, got.text, absent.text)
            assert got.headers["content-type"] == absent.headers["content-type"]
            assert _shape(got.json()) == _shape(absent.json(), ghost, real), (path, got.text)
    # The bases the rankings start from: a private one answers as an unknown one.
    resp = scoped.admin.post("/v1/bases", json=base_body(["acme/base"], "sha256:" + "a" * 64))
    assert resp.status_code == 201, resp.text
    with scoped.client(who) as c:
        for path, extra in (("/v1/leaderboard", {"metric": "acc"}), ("/v1/metrics", {})):
            got = c.get(path, params={"base": "acme/base", **extra})
            absent = c.get(path, params={"base": "acme/ghost", **extra})
            assert got.status_code == absent.status_code, (path, got.text, absent.text)
            assert _shape(got.json()) == _shape(absent.json(), "acme/ghost", "acme/base"), path
