"""A Hub file request resolves an immutable revision (a number, a commit id) once per process
(services/hub_files.py), and yet: a version deleted afterwards, by this server or by another
replica on the same database, answers 404 to huggingface_hub and to raw HTTP; access is decided
on every request (a namespace made private again is refused at once); a signature attached after
the revision was remembered is served. An uploaded base is remembered by name, and asked who
may read it every time."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from registry.access.principal import OPERATOR, Principal
from registry.client.bases import add_base_folder
from registry.client.local import LocalClient
from registry.client.transfer import push_folder
from registry.config import Settings
from registry.entities import SignRequest
from registry.formats.manifest import FileEntry
from registry.formats.paths import SIGNATURE_NAME
from registry.formats.signing import files_statement, sign_statement
from registry.refs import parse_ref
from registry.services import accounts, lifecycle, signatures
from registry.services.context import Registry
from storage.local import LocalBlobStore
from tests.adapter_files import llama_base
from tests.conftest import ServerThread
from tests.hub.clients import run_client

pytestmark = pytest.mark.server

FILE = "adapter_config.json"


def _download(
    server: ServerThread, home: Path, revision: str, repo: str = "acme/legal", path: str = FILE
) -> str:
    """What huggingface_hub's hf_hub_download (anonymous, an empty cache) makes of `revision`:
    the file's text, or the name of the error it raised."""
    return str(
        run_client(
            server.url,
            home,
            f"""
            try:
                out(open(hf.hf_hub_download("{repo}", "{path}", revision="{revision}")).read())
            except Exception as err:
                out(type(err).__name__)
            """,
        )
    )


def test_a_remembered_revision_is_not_served_once_deleted(
    server: ServerThread, settings: Settings, registry: Registry, lora_a: Path, tmp_path: Path
) -> None:
    client = LocalClient(
        registry, "tester", LocalBlobStore(tmp_path / "cache"), principal=Principal.operator("tester")
    )
    first = push_folder(client, lora_a, "acme/legal")
    (lora_a / "README.md").write_text("# two\n")
    push_folder(client, lora_a, "acme/legal")
    accounts.set_namespace_visibility(registry, "acme", True, principal=OPERATOR)
    commit = first.digest.removeprefix("sha256:")[:40]
    http = httpx.Client(base_url=server.url, timeout=30)  # anonymous
    expected = (lora_a / FILE).read_text()
    for revision in (commit, "1"):  # remembered by the server from here on
        assert _download(server, tmp_path / f"hf-{revision}", revision) == expected
        assert http.head(f"/acme/legal/resolve/{revision}/{FILE}").status_code == 200
    assert server.app.state.registry.hub_revisions.get(("acme/legal", "1")) is not None  # type: ignore[attr-defined]

    # Access is asked every time: private again, the remembered revision is refused at once.
    accounts.set_namespace_visibility(registry, "acme", False, principal=OPERATOR)
    refused = http.get(f"/acme/legal/resolve/1/{FILE}")
    assert refused.status_code == 404 and refused.headers["X-Error-Code"] == "RepoNotFound"
    accounts.set_namespace_visibility(registry, "acme", True, principal=OPERATOR)

    # Version 1 deleted through another replica's Registry (nothing reaches this server's cache).
    other = Registry.from_settings(settings)
    try:
        lifecycle.delete_version(other, parse_ref("acme/legal:1"), principal=OPERATOR)
    finally:
        other.close()
    for revision in (commit, "1"):
        gone = http.get(f"/acme/legal/resolve/{revision}/{FILE}")
        assert gone.status_code == 404 and gone.headers["X-Error-Code"] == "RevisionNotFound"
        assert http.head(f"/acme/legal/resolve/{revision}/{FILE}").status_code == 404
        assert _download(server, tmp_path / f"hf-gone-{revision}", revision) == "RevisionNotFoundError"
    assert server.app.state.registry.hub_revisions.get(("acme/legal", "1")) is None  # type: ignore[attr-defined]
    assert http.get(f"/acme/legal/resolve/main/{FILE}").status_code == 200  # version 2 is served
    assert http.get(f"/acme/legal/resolve/2/{FILE}").status_code == 200
    assert http.head(f"/acme/legal/resolve/2/{SIGNATURE_NAME}").status_code == 404

    # A signature attached to version 2, remembered before, is served as model.sig at once.
    files = [FileEntry(f.path, f.size, f.sha256) for f in client.resolve("acme/legal:2").files]
    key = ec.generate_private_key(ec.SECP256R1())
    bundle = sign_statement(files_statement(files, "acme/legal"), key)
    ref = parse_ref("acme/legal:2")
    signatures.sign_version(registry, ref, SignRequest(bundle=bundle.decode()), principal=OPERATOR)
    served = http.get(f"/acme/legal/resolve/2/{SIGNATURE_NAME}")
    assert served.status_code == 200 and served.content == bundle

    # All of it deleted: the repository is gone, remembered revision or not.
    lifecycle.delete_repository(registry, parse_ref("acme/legal").repo, principal=OPERATOR)
    gone = http.get(f"/acme/legal/resolve/2/{FILE}")
    assert gone.status_code == 404 and gone.headers["X-Error-Code"] == "RepoNotFound"


def test_a_remembered_base_is_still_asked_who_may_read_it(
    server: ServerThread, registry: Registry, tmp_path: Path
) -> None:
    client = LocalClient(
        registry, "tester", LocalBlobStore(tmp_path / "cache"), principal=Principal.operator("tester")
    )
    folder = llama_base(tmp_path / "base", seed=1)
    add_base_folder(client, folder, ["acme/base"], revision="v1.0", upload=True)
    accounts.set_namespace_visibility(registry, "acme", True, principal=OPERATOR)
    http = httpx.Client(base_url=server.url, timeout=30)  # anonymous
    commit = http.get("/api/models/acme/base").json()["sha"]
    for revision in ("main", commit, "v1.0"):
        got = http.get(f"/acme/base/resolve/{revision}/config.json")
        assert got.status_code == 200 and got.content == (folder / "config.json").read_bytes()
        assert got.headers["X-Repo-Commit"] == commit
    assert server.app.state.registry.hub_bases.get("acme/base") is not None  # type: ignore[attr-defined]
    missing = http.head("/acme/base/resolve/v2.0/config.json")
    assert missing.status_code == 404 and missing.headers["X-Error-Code"] == "RevisionNotFound"
    entry = http.head("/acme/base/resolve/main/nothing.json")
    assert entry.status_code == 404 and entry.headers["X-Error-Code"] == "EntryNotFound"
    accounts.set_namespace_visibility(registry, "acme", False, principal=OPERATOR)
    refused = http.get("/acme/base/resolve/main/config.json")
    assert refused.status_code == 404 and refused.headers["X-Error-Code"] == "RepoNotFound"
    assert (
        _download(server, tmp_path / "hf-base", "main", "acme/base", "config.json")
        == "RepositoryNotFoundError"
    )
