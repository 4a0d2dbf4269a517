"""Xet uploads through the real client: huggingface_hub 2.x with hf_xet (the default install, no
HF_HUB_DISABLE_XET) against a real uvicorn server. Every upload ends as a version made by the
same commit path as the LFS transfers; a refused upload stores no version."""

from __future__ import annotations

import base64
import hashlib
import pickle
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from registry.api import create_app
from registry.db import models as m
from registry.db.engine import unit_of_work
from registry.formats import xet as fmt
from registry.services.context import Registry
from tests.conftest import ServerThread, db_url_for, make_settings, resource_params
from tests.hub.clients import run_client
from tests.hub.test_hub_write import files_of, make_public, registry_message, versions

pytestmark = pytest.mark.server

REPO = "acme/xetted"


@pytest.fixture(params=resource_params("sqlite-file", "postgresql-s3"))
def xet_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ServerThread, Registry]]:
    db, backend = str(request.param).split("-")
    settings = make_settings(tmp_path, db_url_for(db, tmp_path, request), backend, request)
    reg = Registry.from_settings(settings, migrate=True)
    with ServerThread(create_app(settings, reg)) as srv:
        yield srv, reg
    reg.close()


def _xorbs(reg: Registry) -> list[str]:
    """The xorbs the registry keeps (their objects live in the blob store's xet/ prefix)."""
    with unit_of_work(reg.sessions) as session:
        return list(session.scalars(select(m.XetXorb.hash)))


def test_upload_folder_through_xet_makes_a_version(
    xet_server: tuple[ServerThread, Registry], lora_a: Path, tmp_path: Path
) -> None:
    """upload_folder with hf_xet: the files arrive through xorbs and a shard, are rebuilt and
    stored as sha256 blobs, and the commit makes version 1 with byte-identical files."""
    server, reg = xet_server
    got = run_client(
        server.url,
        tmp_path / "hf",
        f"""
        from huggingface_hub.utils._runtime import is_xet_available
        api = hf.HfApi()
        api.create_repo("{REPO}", exist_ok=True)
        info = api.upload_folder(repo_id="{REPO}", folder_path="{lora_a}", commit_message="via xet")
        out([is_xet_available(), info.oid])
        """,
        HF_HUB_DISABLE_XET="",
        HF_TOKEN=server.token,
    )
    assert got[0] is True  # the client really took the Xet path
    made = versions(reg, REPO)
    assert [v.version for v in made] == [1]
    assert registry_message(reg, REPO, 1) == "via xet"
    want = {
        p.name: "sha256:" + hashlib.sha256(p.read_bytes()).hexdigest()
        for p in lora_a.iterdir()
        if p.is_file()
    }
    assert files_of(reg, REPO, 1) == want
    assert _xorbs(reg), "the weights came as xorbs"
    # The bytes read back over the Hub's plain HTTP are the folder's.
    make_public(reg, "acme")
    for name in want:
        body = httpx.get(f"{server.url}/{REPO}/resolve/main/{name}", follow_redirects=True).content
        assert body == (lora_a / name).read_bytes()


def test_peft_push_to_hub_through_xet(xet_server: tuple[ServerThread, Registry], tmp_path: Path) -> None:
    """PeftModel.push_to_hub from a default install, then from_pretrained: the same logits."""
    server, reg = xet_server
    make_public(reg, "acme")
    got = run_client(
        server.url,
        tmp_path / "hf",
        """
        import torch
        from peft import LoraConfig, PeftModel, get_peft_model
        from tests.adapters_factory import tiny_llama
        torch.manual_seed(0)
        model = get_peft_model(tiny_llama(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                         init_lora_weights=False, task_type="CAUSAL_LM"))
        model.eval()
        ids = torch.tensor([[1, 2, 3, 4, 5]])
        with torch.no_grad():
            want = model(ids).logits
        model.push_to_hub("acme/pushed-xet", commit_message="from PEFT over xet")
        loaded = PeftModel.from_pretrained(tiny_llama(), "acme/pushed-xet")
        loaded.eval()
        with torch.no_grad():
            have = loaded(ids).logits
        out(float((have - want).abs().max()))
        """,
        HF_HUB_DISABLE_XET="",
        HF_TOKEN=server.token,
    )
    assert got == 0.0
    made = versions(reg, "acme/pushed-xet")
    assert [v.version for v in made] == [1] and made[0].peft_type == "LORA"


def test_xet_upload_of_a_pickle_or_unsafe_path_stores_no_version(
    xet_server: tuple[ServerThread, Registry], lora_a: Path, tmp_path: Path
) -> None:
    """The same validation as every push: a pickled checkpoint or a path outside the folder is
    refused after the bytes arrived through Xet, and no version (nor repository row) appears."""
    server, reg = xet_server
    bad = tmp_path / "bad"
    bad.mkdir()
    for p in lora_a.iterdir():
        (bad / p.name).write_bytes(p.read_bytes())
    (bad / "adapter_model.bin").write_bytes(pickle.dumps({"w": list(range(5000))}))
    got = run_client(
        server.url,
        tmp_path / "hf",
        f"""
        api = hf.HfApi()
        answers = []
        try:
            api.upload_folder(repo_id="{REPO}", folder_path="{bad}")
            answers.append("ok")
        except hf_errors.HfHubHTTPError as err:
            answers.append(err.response.headers.get("x-error-code"))
        ops = [hf.CommitOperationAdd(path_in_repo=p.name, path_or_fileobj=str(p))
               for p in __import__("pathlib").Path("{lora_a}").iterdir()]
        ops.append(hf.CommitOperationAdd(path_in_repo="\uff0e\uff0e/escape.bin", path_or_fileobj=b"x" * 70000))
        try:
            api.create_commit(repo_id="{REPO}", operations=ops, commit_message="escape")
            answers.append("ok")
        except hf_errors.HfHubHTTPError as err:
            answers.append(err.response.headers.get("x-error-message"))
        out(answers)
        """,
        HF_HUB_DISABLE_XET="",
        HF_TOKEN=server.token,
    )
    assert got[0] == "PickleRefused", got
    assert "unsafe_path" in got[1], got  # ．．/ reads ../ once NFKC-normalised: refused by the server
    assert versions(reg, REPO) == []


def test_cas_refuses_what_does_not_verify(xet_server: tuple[ServerThread, Registry], tmp_path: Path) -> None:
    """Raw CAS calls: no token or another server's is 401, a read token cannot upload (403), a
    xorb whose chunks do not hash to its name and a malformed shard are 400, nothing stored."""
    server, reg = xet_server
    cas = f"{server.url}/api/xet-cas"
    auth = {"Authorization": f"Bearer {server.token}"}
    write = httpx.get(f"{server.url}/api/models/{REPO}/xet-write-token/main", headers=auth)
    assert write.status_code == 200, write.text
    body = write.json()
    assert body["casUrl"] == cas and write.headers["x-xet-access-token"] == body["accessToken"]
    bearer = {"Authorization": f"Bearer {body['accessToken']}"}
    name = "00" * 32
    assert httpx.post(f"{cas}/v1/xorbs/default/{name}", content=b"x").status_code == 401
    forged = body["accessToken"][:-4] + "0000"
    assert (
        httpx.post(
            f"{cas}/v1/xorbs/default/{name}", content=b"x", headers={"Authorization": f"Bearer {forged}"}
        ).status_code
        == 401
    )
    assert httpx.get(f"{server.url}/api/models/{REPO}/xet-write-token/main").status_code == 401
    # A one-chunk xorb, well formed but uploaded under another hash.
    chunk = b"hello xet" * 100
    header = bytes([0]) + len(chunk).to_bytes(3, "little") + bytes([0]) + len(chunk).to_bytes(3, "little")
    h = fmt.chunk_hash(chunk)
    root = fmt.merkle_root([(h, len(chunk))])
    footer = (
        fmt.XORB_IDENT
        + b"\x01"
        + root
        + fmt.XORB_IDENT_HASHES
        + b"\x00"
        + (1).to_bytes(4, "little")
        + h
        + fmt.XORB_IDENT_BOUNDARIES
        + b"\x00"
        + (1).to_bytes(4, "little")
        + (8 + len(chunk)).to_bytes(4, "little")
        + len(chunk).to_bytes(4, "little")
        + (1).to_bytes(4, "little")
        + bytes(8)
        + bytes(16)
    )
    xorb = header + chunk + footer + len(footer).to_bytes(4, "little")
    wrong = httpx.post(f"{cas}/v1/xorbs/default/{name}", content=xorb, headers=bearer)
    assert wrong.status_code == 400 and "hash to" in wrong.headers["x-error-message"]
    assert _xorbs(reg) == []
    right = httpx.post(f"{cas}/v1/xorbs/default/{fmt.to_hex(root)}", content=xorb, headers=bearer)
    assert right.status_code == 200 and right.json() == {"was_inserted": True}
    again = httpx.post(f"{cas}/v1/xorbs/default/{fmt.to_hex(root)}", content=xorb, headers=bearer)
    assert again.json() == {"was_inserted": False}
    assert httpx.post(f"{cas}/v1/shards", content=b"not a shard", headers=bearer).status_code == 400
    assert httpx.get(f"{cas}/v1/chunks/default-merkledb/{fmt.to_hex(h)}", headers=bearer).status_code == 404
    # A read token names the repository only for someone who may read it, and cannot upload.
    make_public(reg, "acme")
    reg_token = httpx.get(f"{server.url}/api/models/{REPO}/xet-read-token/main", headers=auth)
    if reg_token.status_code == 200:
        read = {"Authorization": f"Bearer {reg_token.json()['accessToken']}"}
        assert (
            httpx.post(f"{cas}/v1/xorbs/default/{fmt.to_hex(root)}", content=xorb, headers=read).status_code
            == 403
        )


def _xorb_of(chunks: list[bytes]) -> tuple[bytes, str]:
    """A xorb of these chunks (uncompressed, no footer, as hf_xet uploads them) and its hash."""
    body = b"".join(
        bytes([0]) + len(c).to_bytes(3, "little") + bytes([0]) + len(c).to_bytes(3, "little") + c
        for c in chunks
    )
    return body, fmt.to_hex(fmt.merkle_root([(fmt.chunk_hash(c), len(c)) for c in chunks]))


def test_cas_refuses_what_would_cost_without_bound(xet_server: tuple[ServerThread, Registry]) -> None:
    """What a review of the Xet routes found (issue 21's standard): an anonymous caller gets no CAS
    token (its claims would name no user, which reads as the operator); a xorb of more chunks than
    xet-core makes is refused before it is indexed; a token or a listing cursor built to exhaust the
    parser is a 401/400, not a 500."""
    server, reg = xet_server
    make_public(reg, "acme")
    auth = {"Authorization": f"Bearer {server.token}"}
    org, name = REPO.split("/")
    assert (
        httpx.post(
            f"{server.url}/api/repos/create", json={"name": name, "organization": org}, headers=auth
        ).status_code
        == 200
    )
    anon = httpx.get(f"{server.url}/api/models/{REPO}/xet-read-token/main")
    assert anon.status_code == 401 and anon.headers["x-error-code"] == "Unauthenticated"
    token = httpx.get(f"{server.url}/api/models/{REPO}/xet-write-token/main", headers=auth).json()[
        "accessToken"
    ]
    cas = f"{server.url}/api/xet-cas"
    bearer = {"Authorization": f"Bearer {token}"}
    many, name = _xorb_of([i.to_bytes(4, "little") for i in range(fmt.MAX_XORB_CHUNKS + 1)])
    refused = httpx.post(f"{cas}/v1/xorbs/default/{name}", content=many, headers=bearer)
    assert refused.status_code == 400 and "chunks" in refused.headers["x-error-message"]
    assert _xorbs(reg) == []
    enough, name = _xorb_of([i.to_bytes(4, "little") for i in range(fmt.MAX_XORB_CHUNKS)])
    assert httpx.post(f"{cas}/v1/xorbs/default/{name}", content=enough, headers=bearer).status_code == 200

    deep = base64.urlsafe_b64encode(
        b"[" * 1400
    ).decode()  # within the token length cap, past the recursion limit
    for forged in (f"xet.{deep}.00", "xet." + base64.urlsafe_b64encode(b'{"e":1e999}').decode() + ".00"):
        answer = httpx.post(
            f"{cas}/v1/xorbs/default/{name}", content=b"x", headers={"Authorization": f"Bearer {forged}"}
        )
        assert answer.status_code == 401, answer.text
    cursor = base64.urlsafe_b64encode(b"[" * 3000).decode().rstrip("=")
    listing = httpx.get(f"{server.url}/api/models", params={"cursor": cursor}, headers=auth)
    assert listing.status_code == 400, listing.text
