"""The REST API over real HTTP (uvicorn on loopback), on every database x blob backend."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx

from registry.client.http import HttpClient
from registry.client.transfer import push_folder
from tests.conftest import ServerThread

PROBLEM = "application/problem+json"


def put_blob(http: httpx.Client, data: bytes, digest: str | None = None) -> httpx.Response:
    digest = digest or "sha256:" + hashlib.sha256(data).hexdigest()
    return http.put(f"/v1/blobs/{digest}", content=data)


def test_health_ready_and_docs(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert http.get("/docs").status_code == 200
    paths = http.get("/openapi.json").json()["paths"]
    assert "/v1/blobs/{digest}" in paths and "/v1/resolve" in paths


def test_blob_upload_verify_and_ranges(http: httpx.Client) -> None:
    data = os.urandom(200_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert http.post("/v1/blobs/missing", json={"digests": [digest]}).json() == {"missing": [digest]}
    assert http.head(f"/v1/blobs/{digest}").status_code == 404
    bad = put_blob(http, data[:-1] + bytes([data[-1] ^ 1]), digest)  # one bit off (b"x" matched 1 in 256)
    assert bad.status_code == 422 and bad.headers["content-type"] == PROBLEM
    assert bad.json()["code"] == "digest_mismatch"
    assert http.post("/v1/blobs/missing", json={"digests": [digest]}).json() == {"missing": [digest]}
    assert put_blob(http, data).status_code == 201
    assert http.post("/v1/blobs/missing", json={"digests": [digest]}).json() == {"missing": []}
    assert http.get(f"/v1/blobs/{digest}").content == data
    part = http.get(f"/v1/blobs/{digest}", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    tail = http.get(f"/v1/blobs/{digest}", headers={"Range": "bytes=-10"})
    assert tail.content == data[-10:]
    out = http.get(f"/v1/blobs/{digest}", headers={"Range": f"bytes={len(data)}-"})
    assert out.status_code == 416 and out.json()["code"] == "range_not_satisfiable"
    assert http.get("/v1/blobs/sha256:zz").json()["code"] == "invalid_digest"


def test_errors_are_problem_json(http: httpx.Client, adapters_dir: Path, server: ServerThread) -> None:
    missing = http.get("/v1/resolve", params={"ref": "acme/nothing"})
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM
    assert missing.json()["code"] == "not_found"
    bad_ref = http.get("/v1/resolve", params={"ref": "NOT A REF"})
    assert bad_ref.status_code == 400 and bad_ref.json()["code"] == "invalid_reference"
    invalid = http.post("/v1/repos/acme/x/versions", json={"files": []})
    assert invalid.status_code == 422 and invalid.json()["code"] == "validation_error"
    absent = http.post(
        "/v1/repos/acme/x/versions",
        json={"files": [{"path": "adapter_config.json", "size": 3, "sha256": "sha256:" + "1" * 64}]},
    )
    assert absent.status_code == 409 and absent.json()["code"] == "blob_missing"
    assert http.get("/v1/nowhere").json()["code"] == "not_found"


def test_commit_list_alias_over_http(
    server: ServerThread, http: httpx.Client, adapters_dir: Path, tmp_path: Path
) -> None:
    client = HttpClient(server.url, user="alice", cache_dir=tmp_path / "cache", token=server.token)
    first = push_folder(client, adapters_dir / "lora_a", "acme/legal", task="legal")
    assert first.created and first.info.pushed_by == "tester"  # the token's user, not X-Adapters-User
    again = http.post(
        "/v1/repos/acme/legal/versions", json={"files": [f.model_dump() for f in first.info.files]}
    )
    assert again.status_code == 200 and again.json()["created"] is False
    put = http.put("/v1/repos/acme/legal/aliases/production", json={"version": 1})
    assert put.json() == {"repo": "acme/legal", "alias": "production", "version": 1, "digest": first.digest}
    assert http.get("/v1/resolve", params={"ref": "acme/legal@production"}).json()["version"] == 1
    page = http.get("/v1/versions", params={"task": "legal", "limit": 1}).json()
    assert [v["ref"] for v in page["items"]] == ["acme/legal:1"] and page["next_cursor"] is None
    assert http.get("/v1/repos/acme/legal/versions/1").json()["digest"] == first.digest
    assert http.delete("/v1/repos/acme/legal/aliases/production").status_code == 200
    gone = http.delete("/v1/repos/acme/legal/aliases/production")
    assert gone.status_code == 404 and gone.json()["code"] == "not_found"
