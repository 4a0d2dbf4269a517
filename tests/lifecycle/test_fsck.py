"""`adapters fsck`: the database against the blob store. A clean registry reports clean; a listed
blob deleted from the store is `missing` with every version and base that lists it, one of another
size `size_mismatch`, other bytes (with --verify) `corrupt`; a blob nothing lists is a stray
(`recent` within gc's grace). Global admins only over HTTP; the CLI exits 1 on any finding. On
{SQLite, PostgreSQL} x {file, S3}; tests/deploy/test_backup_restore.py runs it after a restore."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from cli.main import cli
from registry.access.principal import OPERATOR, Principal
from registry.client.local import LocalClient
from registry.entities import BaseRegistration, FileInfo
from registry.services import accounts, fsck
from registry.services.context import Registry
from storage import BlobStore
from storage.local import LocalBlobStore
from tests.conftest import ServerThread
from tests.lifecycle.conftest import push


def put(store: BlobStore, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    store.put(io.BytesIO(data), digest, len(data))
    return digest


def weights(result: object) -> str:
    return next(f.sha256 for f in result.info.files if f.path.endswith(".safetensors"))  # type: ignore[attr-defined]


def test_fsck_reports_what_the_two_disagree_on(
    client: LocalClient, registry: Registry, tmp_path: Path
) -> None:
    store = registry.store
    push(client, tmp_path, "acme/x", 1)
    y = push(client, tmp_path, "acme/y", 2)
    push(client, tmp_path, "acme/y", 3)
    base_blob = put(store, b"base weights")
    client.register_base(
        BaseRegistration(
            names=[{"name": "acme/base"}],  # type: ignore[list-item]
            fingerprint="sha256:" + "2" * 64,
            structure_signature="sha256:" + "1" * 64,
            modules=[],
            files=[FileInfo(path="model.safetensors", size=12, sha256=base_blob)],
        )
    )
    report = client.check_store()
    assert report.clean and not report.problems and not report.unlisted
    assert report.versions_checked == 3 and report.blobs_listed == report.blobs_scanned == 5

    stray = put(store, b"a push never committed")
    report = client.check_store()
    assert not report.clean and not report.problems
    assert [(s.digest, s.size, s.recent) for s in report.unlisted] == [(stray, 22, True)]
    assert report.bytes_unlisted == 22
    aged = fsck.check_store(registry, principal=client.principal, grace_s=0)
    assert [s.recent for s in aged.unlisted] == [False]

    lost = weights(y)
    store.delete(lost)
    store.delete(base_blob)
    report = client.check_store()
    assert sorted((p.digest, p.problem) for p in report.problems) == sorted(
        [(lost, "missing"), (base_blob, "missing")]
    )
    by_digest = {p.digest: p for p in report.problems}
    assert by_digest[lost].versions == ["acme/y:1 adapter_model.safetensors"]
    assert by_digest[base_blob].bases == ["base acme/base model.safetensors"]
    assert report.versions_affected == ["acme/y:1"]
    assert {s.digest for s in report.unlisted} == {stray}

    if isinstance(store, LocalBlobStore):  # bytes of another size under the base's digest
        path = store.path_for(base_blob)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"short")
        report = client.check_store()
        assert by_digest[base_blob].size == 12
        assert [(p.problem, p.stored_size) for p in report.problems if p.digest == base_blob] == [
            ("size_mismatch", 5)
        ]


@pytest.mark.parametrize("blob_backend", ["file"], indirect=True)
def test_fsck_verify_hashes_the_bytes(client: LocalClient, registry: Registry, tmp_path: Path) -> None:
    store = registry.store
    assert isinstance(store, LocalBlobStore)
    x = push(client, tmp_path, "acme/x", 1)
    blob = weights(x)
    path = store.path_for(blob)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # one bit-flipped byte, same size: only hashing finds it
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    assert client.check_store().clean
    report = client.check_store(verify=True)
    assert report.verified and [(p.digest, p.problem) for p in report.problems] == [(blob, "corrupt")]
    assert report.versions_affected == ["acme/x:1"]


@pytest.mark.parametrize("blob_backend", ["file"], indirect=True)
def test_fsck_over_http_is_for_global_admins(
    server: ServerThread, registry: Registry, tmp_path: Path
) -> None:
    accounts.add_user(registry, "wendy", principal=OPERATOR)
    accounts.grant(registry, "wendy", "acme", "admin", principal=OPERATOR)
    wendy, _ = accounts.create_token(registry, "wendy", principal=OPERATOR)
    local = LocalClient(
        registry, "tester", LocalBlobStore(tmp_path / "cache"), principal=Principal.operator("tester")
    )
    x = push(local, tmp_path, "acme/x", 1)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/v1/fsck").status_code == 401
        denied = http.get("/v1/fsck", headers={"Authorization": f"Bearer {wendy}"})
        assert denied.status_code == 403 and denied.json()["code"] == "forbidden"
        assert http.get("/v1/fsck", headers=server.auth).json()["clean"] is True

    env = {"ADAPTERS_URL": server.url, "ADAPTERS_TOKEN": server.token, "ADAPTERS_HOME": str(tmp_path / "h")}
    ok = CliRunner().invoke(cli, ["fsck"], env=env, catch_exceptions=False)
    assert ok.exit_code == 0 and "clean" in ok.output
    registry.store.delete(weights(x))
    found = CliRunner().invoke(cli, ["fsck", "--json"], env=env, catch_exceptions=False)
    assert found.exit_code == 1
    doc = json.loads(found.stdout)
    assert doc["clean"] is False and doc["versions_affected"] == ["acme/x:1"]
    assert doc["problems"][0]["problem"] == "missing"
    text = CliRunner().invoke(cli, ["fsck"], env=env, catch_exceptions=False)
    assert (
        text.exit_code == 1
        and "missing" in text.output
        and "acme/x:1 adapter_model.safetensors" in text.output
    )
    refused = CliRunner().invoke(cli, ["fsck"], env={**env, "ADAPTERS_TOKEN": wendy}, catch_exceptions=False)
    assert refused.exit_code == 1 and "forbidden" in refused.output
