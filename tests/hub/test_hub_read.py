"""The Hugging Face Hub protocol's read path, driven by the real huggingface_hub client (in a
subprocess, HF_ENDPOINT at a real uvicorn server) and by raw HTTP, on every database x blob store."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
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
from tests.conftest import ServerThread, db_url_for, make_settings, resource_params
from tests.hub.clients import run_client

pytestmark = pytest.mark.server

HEX40 = re.compile(r"[0-9a-f]{40}")


def sha256_hex(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def push_two_versions(url: str, folder: Path, tmp_path: Path, token: str) -> dict[str, Any]:
    """acme/legal:1 (alias production) and acme/legal:2 (a README and a file in a folder added)."""
    client = HttpClient(url, user="alice", cache_dir=tmp_path / "push-cache", token=token)
    first = push_folder(client, folder, "acme/legal", task="legal", aliases=["production"])
    (folder / "README.md").write_text("# legal\n")
    (folder / "docs").mkdir()
    (folder / "docs" / "notes.md").write_text("notes\n")
    second = push_folder(client, folder, "acme/legal", task="legal")
    return {"v1": first.digest.removeprefix("sha256:")[:40], "v2": second.digest.removeprefix("sha256:")[:40]}


def test_huggingface_hub_reads_the_registry(server: ServerThread, lora_a: Path, tmp_path: Path) -> None:
    commits = push_two_versions(server.url, lora_a, tmp_path, server.token)
    expected = {p.relative_to(lora_a).as_posix(): sha256_hex(p) for p in lora_a.rglob("*") if p.is_file()}
    accounts.grant(server.app.state.registry, "tester", "acme", "write", principal=OPERATOR)  # type: ignore[attr-defined]
    got = run_client(
        server.url,
        tmp_path / "hf",
        f"""
        api = hf.HfApi()
        res = {{}}
        info = api.model_info("acme/legal", files_metadata=True, securityStatus=None)
        res["info"] = dict(sha=info.sha, library=info.library_name, tags=info.tags, private=info.private,
            card=info.card_data.to_dict() if info.card_data else None, created=str(info.created_at),
            modified=str(info.last_modified),
            siblings={{s.rfilename: [s.size, s.lfs["sha256"] if s.lfs else None] for s in info.siblings}})
        res["by_rev"] = {{r: api.model_info("acme/legal", revision=r).sha
                         for r in ["1", "2", "main", "production", "{commits["v1"]}"]}}
        res["expand"] = api.model_info("acme/legal", expand=["sha", "siblings"]).sha
        tree = list(api.list_repo_tree("acme/legal", recursive=True))
        res["tree"] = [[type(e).__name__, e.path, getattr(e, "size", None),
                        (e.lfs or {{}}).get("sha256") if hasattr(e, "lfs") else None,
                        getattr(e, "xet_hash", None)] for e in tree]
        res["top"] = sorted(e.path for e in api.list_repo_tree("acme/legal"))
        res["sub"] = [e.path for e in api.list_repo_tree("acme/legal", path_in_repo="docs", revision="2")]
        path = hf.hf_hub_download("acme/legal", "adapter_config.json", revision="production")
        res["download"] = open(path, "rb").read().decode()
        meta = hf.get_hf_file_metadata(hf.hf_hub_url("acme/legal", "adapter_model.safetensors"))
        res["meta"] = dict(commit=meta.commit_hash, etag=meta.etag, size=meta.size, xet=meta.xet_file_data)
        snap = hf.snapshot_download("acme/legal", revision="{commits["v1"]}")
        res["snapshot"] = snap
        res["snapshot_main"] = hf.snapshot_download("acme/legal")
        refs = api.list_repo_refs("acme/legal")
        res["refs"] = dict(branches={{b.name: b.target_commit for b in refs.branches}},
                           tags={{t.name: t.target_commit for t in refs.tags}})
        res["whoami"] = api.whoami()  # HF_TOKEN: the registry token, sent as Bearer
        try:
            api.whoami(token="hf_anything")
            res["bad_token"] = None
        except hf_errors.HfHubHTTPError as err:
            res["bad_token"] = err.response.status_code
        res["exists"] = [api.file_exists("acme/legal", "docs/notes.md"),
                         api.file_exists("acme/legal", "docs/notes.md", revision="1")]
        errors = {{}}
        for name, call in [
            ("repo", lambda: api.model_info("acme/nothing")),
            ("repo_file", lambda: hf.hf_hub_download("acme/nothing", "adapter_config.json")),
            ("revision", lambda: api.model_info("acme/legal", revision="staging")),
            ("revision_file", lambda: hf.hf_hub_download("acme/legal", "adapter_config.json", revision="9")),
            ("revision_commit", lambda: hf.hf_hub_download("acme/legal", "README.md", revision="0" * 40)),
            ("entry", lambda: hf.hf_hub_download("acme/legal", "missing.json")),
            ("entry_at_v1", lambda: hf.hf_hub_download("acme/legal", "docs/notes.md", revision="1")),
            ("tree_entry", lambda: list(api.list_repo_tree("acme/legal", path_in_repo="nowhere"))),
        ]:
            try:
                call()
                errors[name] = None
            except Exception as err:
                errors[name] = type(err).__name__
        res["errors"] = errors
        out(res)
        """,
        HF_TOKEN=server.token,
    )
    info = got["info"]
    assert info["sha"] == commits["v2"] and HEX40.fullmatch(info["sha"])
    assert info["library"] == "peft" and info["private"] is True  # namespaces are private by default
    assert {"peft", "lora", "legal"} <= set(info["tags"])
    assert info["card"]["library_name"] == "peft"
    assert info["created"] != "None" and info["modified"] != "None"
    assert info["siblings"] == {
        path: [(lora_a / path).stat().st_size, digest] for path, digest in expected.items()
    }
    assert got["by_rev"] == {
        "1": commits["v1"],
        "2": commits["v2"],
        "main": commits["v2"],
        "production": commits["v1"],
        commits["v1"]: commits["v1"],
    }
    assert got["expand"] == commits["v2"]
    files = {e[1]: e for e in got["tree"] if e[0] == "RepoFile"}
    assert {p: (e[2], e[3]) for p, e in files.items()} == {
        p: ((lora_a / p).stat().st_size, d) for p, d in expected.items()
    }
    assert all(e[4] is None for e in got["tree"])  # never a xetHash
    assert ["RepoFolder", "docs"] == [e[:2] for e in got["tree"] if e[0] == "RepoFolder"][0]
    assert got["top"] == ["README.md", "adapter_config.json", "adapter_model.safetensors", "docs"]
    assert got["sub"] == ["docs/notes.md"]
    assert got["download"] == (lora_a / "adapter_config.json").read_text()
    weights = lora_a / "adapter_model.safetensors"
    assert got["meta"] == {
        "commit": commits["v2"],
        "etag": sha256_hex(weights),
        "size": weights.stat().st_size,
        "xet": None,
    }
    snapshot = Path(got["snapshot"])
    assert snapshot.name == commits["v1"]
    assert sorted(p.name for p in snapshot.iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    assert (snapshot / "README.md").read_text() != "# legal\n"  # v1's model card, not v2's
    assert sha256_hex(snapshot / "adapter_model.safetensors") == sha256_hex(weights)
    assert (Path(got["snapshot_main"]) / "docs" / "notes.md").read_text() == "notes\n"
    assert got["refs"] == {
        "branches": {"main": commits["v2"], "production": commits["v1"]},
        "tags": {"1": commits["v1"], "2": commits["v2"]},
    }
    assert got["whoami"]["name"] == "tester" and got["whoami"]["orgs"] == [{"name": "acme", "type": "org"}]
    assert got["bad_token"] == 401
    assert got["whoami"]["auth"]["accessToken"]["role"] == "write"
    assert got["exists"] == [True, False]
    assert got["errors"] == {
        "repo": "RepositoryNotFoundError",
        "repo_file": "RepositoryNotFoundError",
        "revision": "RevisionNotFoundError",
        "revision_file": "RevisionNotFoundError",
        "revision_commit": "RevisionNotFoundError",
        "entry": "RemoteEntryNotFoundError",
        "entry_at_v1": "RemoteEntryNotFoundError",
        "tree_entry": "RemoteEntryNotFoundError",
    }

    # The cache answers a pinned commit with no server at all (HF_HUB_OFFLINE=1).
    offline = run_client(
        "http://127.0.0.1:9",
        tmp_path / "hf",
        f"""
        path = hf.hf_hub_download("acme/legal", "adapter_config.json", revision="{commits["v1"]}")
        snap = hf.snapshot_download("acme/legal", revision="{commits["v1"]}")
        out([open(path).read(), snap])
        """,
        HF_HUB_OFFLINE="1",
    )
    assert offline == [(lora_a / "adapter_config.json").read_text(), got["snapshot"]]


def test_hub_http_headers_ranges_errors_and_pages(server: ServerThread, lora_a: Path, tmp_path: Path) -> None:
    commits = push_two_versions(server.url, lora_a, tmp_path, server.token)
    weights = (lora_a / "adapter_model.safetensors").read_bytes()
    digest = hashlib.sha256(weights).hexdigest()
    http = httpx.Client(base_url=server.url, timeout=30, headers=server.auth)
    url = "/acme/legal/resolve/main/adapter_model.safetensors"
    head = http.head(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["x-repo-commit"] == commits["v2"]
    assert head.headers["x-linked-etag"] == head.headers["etag"] == f'"{digest}"'
    assert head.headers["x-linked-size"] == head.headers["content-length"] == str(len(weights))
    assert head.headers["accept-ranges"] == "bytes"
    assert not [h for h in head.headers if h.lower().startswith("x-xet")]
    full = http.get(url)
    assert full.status_code == 200 and full.content == weights and full.headers["etag"] == f'"{digest}"'
    part = http.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == weights[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(weights)}"
    pinned = http.head(f"/acme/legal/resolve/{commits['v1']}/adapter_config.json")
    assert pinned.headers["x-repo-commit"] == commits["v1"] and "immutable" in pinned.headers["cache-control"]

    # Errors: X-Error-Code, X-Error-Message and a JSON body with `error`; HEAD carries the headers.
    for path, code in [
        ("/api/models/acme/nothing", "RepoNotFound"),
        ("/api/models/acme/legal/revision/nope", "RevisionNotFound"),
        ("/acme/legal/resolve/main/nope.json", "EntryNotFound"),
        ("/api/models/NOT A REPO/x", "RepoNotFound"),
        ("/api/models/acme/legal/tree/main/nowhere", "EntryNotFound"),
    ]:
        answer = http.get(path)
        assert answer.status_code == 404, path
        assert answer.headers["x-error-code"] == code and answer.headers["x-error-message"]
        assert answer.json()["error"]
    missing = http.head("/acme/legal/resolve/main/nope.json")
    assert missing.status_code == 404 and missing.headers["x-error-code"] == "EntryNotFound"
    assert missing.headers["x-repo-commit"] == commits["v2"]
    bad_range = http.get(url, headers={"Range": f"bytes={len(weights)}-"})
    assert bad_range.status_code == 416 and bad_range.headers["x-error-code"] == "RangeNotSatisfiable"
    clamped = http.get(url, headers={"Range": "bytes=10-" + "9" * 100})  # an end past the file
    assert clamped.status_code == 206 and clamped.content == weights[10:]
    assert clamped.headers["content-range"] == f"bytes 10-{len(weights) - 1}/{len(weights)}"
    ignored = http.get(url, headers={"Range": "bytes=20-10"})  # first after last: invalid, ignored
    assert ignored.status_code == 200 and ignored.content == weights
    assert http.get("/api/models/acme/legal/tree/main", params={"cursor": "%%%"}).status_code == 400

    # Unknown query parameters are ignored, never a 4xx.
    info = http.get(
        "/api/models/acme/legal",
        params=[("expand", "sha"), ("expand", "siblings"), ("securityStatus", "True"), ("blobs", "1")],
    )
    assert info.status_code == 200 and info.json()["sha"] == commits["v2"]
    sibling = {s["rfilename"]: s for s in info.json()["siblings"]}["adapter_model.safetensors"]
    assert sibling["lfs"]["sha256"] == digest and sibling["size"] == len(weights)

    # Pages follow `Link: <...>; rel="next"`; file entries carry oid and lfs, never xetHash.
    paths, pages, next_url = [], 0, f"{server.url}/api/models/acme/legal/tree/main?recursive=True&limit=2"
    while next_url:
        page = http.get(next_url)
        pages += 1
        for entry in page.json():
            paths.append(entry["path"])
            assert "xetHash" not in entry
            if entry["type"] == "file":
                assert HEX40.fullmatch(entry["oid"]) and entry["lfs"]["size"] == entry["size"]
                assert re.fullmatch(r"[0-9a-f]{64}", entry["lfs"]["oid"]) and entry["lfs"]["pointerSize"] > 0
        next_url = page.links.get("next", {}).get("url")
    assert pages == 3
    assert paths == ["README.md", "adapter_config.json", "adapter_model.safetensors", "docs", "docs/notes.md"]

    # huggingface_hub's own paginator follows our Link header.
    assert (
        run_client(
            server.url,
            tmp_path / "hf",
            """
        from huggingface_hub.utils._pagination import paginate
        out([e["path"] for e in paginate(hf.constants.ENDPOINT + "/api/models/acme/legal/tree/main",
                                          params={"recursive": True, "limit": 2}, headers=hf.utils.build_hf_headers())])
        """,
            HF_TOKEN=server.token,
        )
        == paths
    )


@pytest.fixture(params=resource_params("sqlite", "postgresql"))
def presigned_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerThread]:
    db = db_url_for(str(request.param), tmp_path, request)
    settings = make_settings(tmp_path, db, "s3", request).model_copy(update={"s3_presign_downloads": True})
    reg = Registry.from_settings(settings, migrate=True)
    with ServerThread(create_app(settings, reg)) as srv:
        yield srv
    reg.close()


def test_presigned_downloads_carry_the_metadata_on_the_redirect(
    presigned_server: ServerThread, lora_a: Path, tmp_path: Path
) -> None:
    commits = push_two_versions(presigned_server.url, lora_a, tmp_path, presigned_server.token)
    weights = lora_a / "adapter_model.safetensors"
    http = httpx.Client(base_url=presigned_server.url, timeout=30, headers=presigned_server.auth)
    for method in ("HEAD", "GET"):
        answer = http.request(method, "/acme/legal/resolve/main/adapter_model.safetensors")
        assert answer.status_code == 302, method
        assert answer.headers["x-repo-commit"] == commits["v2"]
        assert answer.headers["x-linked-etag"] == answer.headers["etag"] == f'"{sha256_hex(weights)}"'
        assert answer.headers["x-linked-size"] == str(weights.stat().st_size)
        assert answer.headers["location"].startswith("http://127.0.0.1:")
    got = run_client(
        presigned_server.url,
        tmp_path / "hf",
        """
        meta = hf.get_hf_file_metadata(hf.hf_hub_url("acme/legal", "adapter_model.safetensors"))
        path = hf.hf_hub_download("acme/legal", "adapter_model.safetensors")
        snap = hf.snapshot_download("acme/legal", revision="1")
        out(dict(commit=meta.commit_hash, etag=meta.etag, size=meta.size, path=path, snap=snap))
        """,
        HF_TOKEN=presigned_server.token,
    )
    assert got["commit"] == commits["v2"] and got["etag"] == sha256_hex(weights)
    assert got["size"] == weights.stat().st_size
    assert Path(got["path"]).read_bytes() == weights.read_bytes()
    assert sorted(p.name for p in Path(got["snap"]).iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]


def test_odd_hub_requests_are_answered_never_5xx(server: ServerThread, lora_a: Path, tmp_path: Path) -> None:
    """The Hub routes are outside /openapi.json (schemathesis does not reach them): odd ids,
    revisions and paths, by hand."""
    push_two_versions(server.url, lora_a, tmp_path, server.token)
    http = httpx.Client(base_url=server.url, timeout=30, headers=server.auth)
    long = "a" * 300
    for path in [
        f"/api/models/acme/legal/revision/{long}",
        "/api/models/acme/legal/revision/%E2%80%AEprod",
        "/api/models/acme/legal/revision/99999999999999999999",
        "/api/models/acme/legal/revision/0",
        f"/api/models/{long}/{long}",
        f"/api/models/{long}",
        "/api/models/Acme/Legal",
        "/api/models/acme/legal/tree/main/..%2F..%2Fetc",
        "/acme/legal/resolve/main/%F0%9F%98%80",
        f"/acme/legal/resolve/{'f' * 40}/adapter_config.json",
        "/acme/legal/resolve/main/",
        "/nothing/resolve/main/config.json",
    ]:
        for method in ("GET",) if path.startswith("/api/") else ("GET", "HEAD"):
            answer = http.request(method, path)
            assert 400 <= answer.status_code < 500, (method, path, answer.status_code)
            assert answer.headers.get("x-error-code"), (method, path)
    assert http.get("/api/models/acme/legal/tree/main", params={"limit": 0}).status_code == 422
    assert http.get("/api/models/acme/legal/tree/main", params={"recursive": "maybe"}).status_code == 200
