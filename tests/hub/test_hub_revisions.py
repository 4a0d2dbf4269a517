"""Raw HTTP as huggingface_hub sends it: a revision with a slash arrives as one percent-encoded
segment (`refs%2Fheads%2Fmain`) on every route that carries one; any other /api/models/ path
answers the Hub's way; whoami lists the user's namespaces; a repository whose versions were all
deleted is gone from the Hub as from /v1, and a Hub commit to it continues its numbers."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import httpx

from registry.access.principal import OPERATOR, Principal
from registry.refs import parse_repo
from registry.services import accounts, hub_write, lifecycle
from tests.conftest import ServerThread
from tests.hub.test_hub_read import push_two_versions

MAIN = "refs%2Fheads%2Fmain"


def _hub_error(answer: httpx.Response, code: str) -> None:
    assert answer.status_code == 404, (answer.request.url, answer.text)
    assert answer.headers["x-error-code"] == code, (answer.request.url, answer.headers)
    assert answer.headers["x-error-message"]


def _commit_lines(summary: str, path: str, data: bytes) -> bytes:
    lines: list[dict[str, Any]] = [
        {"key": "header", "value": {"summary": summary}},
        {
            "key": "file",
            "value": {"path": path, "encoding": "base64", "content": base64.b64encode(data).decode()},
        },
    ]
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def test_revisions_with_a_slash_on_every_route(server: ServerThread, lora_a: Path, tmp_path: Path) -> None:
    commits = push_two_versions(server.url, lora_a, tmp_path, server.token)
    http = httpx.Client(base_url=server.url, timeout=30, headers=server.auth)

    # resolve: the revision is one raw segment, the file path (with its folder) the rest.
    url = f"/acme/legal/resolve/{MAIN}/adapter_config.json"
    got = http.get(url)
    assert got.status_code == 200, got.text
    assert got.headers["x-repo-commit"] == commits["v2"]
    assert got.content == (lora_a / "adapter_config.json").read_bytes()
    assert http.head(url).headers["x-repo-commit"] == commits["v2"]
    nested = http.get(f"/acme/legal/resolve/{MAIN}/docs/notes.md")
    assert nested.status_code == 200 and nested.content == b"notes\n"
    alias = http.head("/acme/legal/resolve/refs%2Fheads%2Fproduction/adapter_config.json")
    assert alias.status_code == 200 and alias.headers["x-repo-commit"] == commits["v1"]
    _hub_error(http.get("/acme/legal/resolve/refs%2Fheads%2Fnope/adapter_config.json"), "RevisionNotFound")
    _hub_error(http.get(f"/acme/legal/resolve/{MAIN}/nope.json"), "EntryNotFound")

    # model info at a revision: the revision is the rest of the path.
    info = http.get(f"/api/models/acme/legal/revision/{MAIN}")
    assert info.status_code == 200 and info.json()["sha"] == commits["v2"]
    assert (
        http.get("/api/models/acme/legal/revision/refs%2Fheads%2Fproduction").json()["sha"] == commits["v1"]
    )
    _hub_error(http.get("/api/models/acme/legal/revision/refs%2Fheads%2Fnope"), "RevisionNotFound")
    _hub_error(http.get(f"/api/models/acme/nothing/revision/{MAIN}"), "RepoNotFound")

    # tree: the revision one raw segment, the folder the rest.
    top = http.get(f"/api/models/acme/legal/tree/{MAIN}")
    assert top.status_code == 200, top.text
    assert {e["path"] for e in top.json()} >= {"adapter_config.json", "docs"}
    docs = http.get(f"/api/models/acme/legal/tree/{MAIN}/docs")
    assert docs.status_code == 200 and [e["path"] for e in docs.json()] == ["docs/notes.md"]
    _hub_error(http.get("/api/models/acme/legal/tree/refs%2Fheads%2Fnope"), "RevisionNotFound")

    # preupload and commit: refs/heads/main is main.
    pre = http.post(
        f"/api/models/acme/legal/preupload/{MAIN}",
        json={"files": [{"path": "README.md", "size": 8, "sample": ""}]},
    )
    assert pre.status_code == 200, pre.text
    done = http.post(
        f"/api/models/acme/legal/commit/{MAIN}",
        content=_commit_lines("through refs/heads/main", "README.md", b"# three\n"),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert done.status_code == 200, done.text
    assert http.get("/acme/legal/resolve/3/README.md").content == b"# three\n"

    # Any other /api/models/ path: the Hub's error codes, never a bare 404.
    _hub_error(http.get("/api/models/acme/nothing/tree"), "RepoNotFound")
    _hub_error(http.get("/api/models/acme/nothing/whatever/else"), "RepoNotFound")
    _hub_error(http.get("/api/models/acme/legal/tree"), "RevisionNotFound")
    _hub_error(http.head("/api/models/acme/legal/tree"), "RevisionNotFound")
    _hub_error(http.get("/api/models/acme/legal/unknown/route"), "EntryNotFound")


def test_whoami_lists_the_namespaces_granted(server: ServerThread) -> None:
    reg = server.app.state.registry  # type: ignore[attr-defined]
    accounts.add_user(reg, "bob", principal=OPERATOR)
    accounts.grant(reg, "bob", "zeta", "read", principal=OPERATOR)
    accounts.grant(reg, "bob", "acme", "write", principal=OPERATOR)
    token, _ = accounts.create_token(reg, "bob", name="bob", principal=OPERATOR)
    me = httpx.get(f"{server.url}/api/whoami-v2", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert me.status_code == 200, me.text
    assert me.json()["name"] == "bob"
    assert me.json()["orgs"] == [{"name": "acme", "type": "org"}, {"name": "zeta", "type": "org"}]


def test_a_repository_whose_versions_were_deleted_is_not_found(
    server: ServerThread, lora_a: Path, tmp_path: Path
) -> None:
    reg = server.app.state.registry  # type: ignore[attr-defined]
    push_two_versions(server.url, lora_a, tmp_path, server.token)
    http = httpx.Client(base_url=server.url, timeout=30, headers=server.auth)
    assert hub_write.create_repo(reg, "acme/empty", Principal.operator("tester"))
    lifecycle.delete_repository(reg, parse_repo("acme/legal"), principal=OPERATOR)

    assert http.get("/v1/resolve", params={"ref": "acme/legal"}).status_code == 404
    for path in (
        "/api/models/acme/legal",
        "/api/models/acme/legal/revision/main",
        "/api/models/acme/legal/tree/main",
        "/api/models/acme/legal/refs",
        "/acme/legal/resolve/main/adapter_config.json",
    ):
        _hub_error(http.get(path), "RepoNotFound")
    # One made by create_repo, never given a version, is an empty repository.
    empty = http.get("/api/models/acme/empty")
    assert empty.status_code == 200 and empty.json()["siblings"] == []

    # A Hub commit brings it back with the next number (deleted numbers are never reused).
    done = http.post(
        "/api/models/acme/legal/commit/main",
        content=_commit_lines("again", "adapter_config.json", (lora_a / "adapter_config.json").read_bytes())
        + json.dumps(
            {
                "key": "lfsFile",
                "value": {
                    "path": "adapter_model.safetensors",
                    "algo": "sha256",
                    "oid": _sha(lora_a / "adapter_model.safetensors"),
                    "size": (lora_a / "adapter_model.safetensors").stat().st_size,
                },
            }
        ).encode()
        + b"\n",
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert done.status_code == 200, done.text
    assert done.json()["version"] == 3
    assert http.get("/api/models/acme/legal").status_code == 200


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
