"""The Hugging Face Hub protocol's write path, driven by the real clients (huggingface_hub, PEFT;
in a subprocess, HF_ENDPOINT at a real uvicorn server, HF_HUB_DISABLE_XET=1) and by raw HTTP:
every Hub commit is a version made by the same push path as `adapters push`."""

from __future__ import annotations

import base64
import hashlib
import json
import pickle
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from registry.access.principal import OPERATOR
from registry.api import create_app
from registry.entities import VersionFilter
from registry.services import queries
from registry.services.context import Registry
from registry.services.hub_lfs import PartStore, Signer
from registry.startup import load_secret_key
from tests.conftest import ServerThread, db_url_for, make_settings, resource_params
from tests.hub.clients import run_client

pytestmark = pytest.mark.server

REPO = "acme/hubbed"


def make_public(reg: Registry, *namespaces: str) -> None:
    """Anonymous clients read these namespaces (where access control marks namespaces private by
    default; a no-op before it exists)."""
    from registry.db import models as m
    from registry.db.engine import unit_of_work
    from registry.services.timeutil import now

    model = getattr(m, "Namespace", None)
    if model is None:
        return
    with unit_of_work(reg.sessions) as session:
        for name in namespaces:
            session.merge(model(name=name, public=True, updated_at=now()))


def versions(reg: Registry, repo: str) -> list[Any]:
    return sorted(
        queries.list_versions(reg, VersionFilter(repo=repo), principal=OPERATOR).items,
        key=lambda v: v.version,
    )


def files_of(reg: Registry, repo: str, number: int) -> dict[str, str]:
    from registry.refs import Ref, parse_repo
    from registry.services.versions import resolve

    return {
        f.path: f.sha256
        for f in resolve(reg, Ref(parse_repo(repo), version=number), principal=OPERATOR).files
    }


def test_upload_folder_file_delete_and_refusals(
    server: ServerThread, registry: Registry, lora_a: Path, tmp_path: Path
) -> None:
    """create_repo, upload_folder (v1), upload_file (v2, the parent's files kept), delete_file
    (v3), each summary the version's message; refusals carry their code and store nothing."""
    make_public(registry, "acme")
    (tmp_path / "evil").mkdir()
    # A pickle under a name of its own (training_args.bin is left out by preupload's shouldIgnore).
    (tmp_path / "evil" / "state.bin").write_bytes(pickle.dumps({"lr": 1}))
    got = run_client(
        server.url,
        tmp_path / "hf",
        f"""
        api = hf.HfApi()
        res = {{}}
        url = api.create_repo("{REPO}")
        res["url"] = [str(url), url.repo_id]
        api.create_repo("{REPO}", exist_ok=True)
        try:
            api.create_repo("{REPO}")
        except hf_errors.HfHubHTTPError as err:
            res["again"] = err.response.status_code
        empty = api.repo_info("{REPO}")
        res["empty"] = [empty.sha, [s.rfilename for s in empty.siblings or []]]
        c1 = api.upload_folder(repo_id="{REPO}", folder_path="{lora_a}", commit_message="first upload",
                               commit_description="from a folder")
        res["c1"] = c1.oid
        c2 = api.upload_file(path_or_fileobj=b"# hubbed\\nnotes\\n", path_in_repo="README.md",
                             repo_id="{REPO}", commit_message="readme")
        res["c2"] = c2.oid
        res["readme"] = open(hf.hf_hub_download("{REPO}", "README.md"), "rb").read().decode()
        c3 = api.delete_file("README.md", repo_id="{REPO}", commit_message="drop the readme")
        res["c3"] = c3.oid
        res["files_main"] = sorted(api.list_repo_files("{REPO}"))
        res["sha_main"] = api.model_info("{REPO}").sha
        errors = {{}}
        for name, call in [
            ("stale", lambda: api.upload_file(path_or_fileobj=b"x\\n", path_in_repo="NOTES.md",
                repo_id="{REPO}", parent_commit=c1.oid)),
            ("pickle", lambda: api.upload_file(path_or_fileobj="{tmp_path / "evil" / "state.bin"}",
                path_in_repo="state.bin", repo_id="{REPO}")),
            ("pickle_new_repo", lambda: api.upload_folder(repo_id="acme/evil",
                folder_path="{tmp_path / "evil"}")),
            ("bad_config", lambda: api.upload_file(path_or_fileobj=b'{{"peft_type": "NOPE"}}',
                path_in_repo="adapter_config.json", repo_id="{REPO}")),
            ("missing_delete", lambda: api.delete_file("nothing.json", repo_id="{REPO}")),
        ]:
            try:
                call()
                errors[name] = None
            except hf_errors.HfHubHTTPError as err:
                errors[name] = [err.response.status_code, err.response.headers.get("x-error-code"),
                                err.response.headers.get("x-error-message")]
        res["errors"] = errors
        out(res)
        """,
        HF_TOKEN=server.token,
    )
    assert got["url"] == [f"{server.url}/{REPO}", REPO]
    assert got["again"] == 409
    assert got["empty"][1] == []
    local = {p.relative_to(lora_a).as_posix() for p in lora_a.rglob("*") if p.is_file()}
    made = versions(registry, REPO)
    assert [v.version for v in made] == [1, 2, 3]
    assert [v.digest.removeprefix("sha256:")[:40] for v in made] == [got["c1"], got["c2"], got["c3"]]
    assert got["empty"][0] not in (got["c1"], None)
    v1, v2, v3 = (files_of(registry, REPO, n) for n in (1, 2, 3))
    assert set(v1) == local
    assert {p: d for p, d in v2.items() if p != "README.md"} == {
        p: d for p, d in v1.items() if p != "README.md"
    }
    assert got["readme"] == "# hubbed\nnotes\n"
    assert v2["README.md"] == "sha256:" + hashlib.sha256(b"# hubbed\nnotes\n").hexdigest()
    assert set(v3) == set(v1) - {"README.md"} and got["files_main"] == sorted(v3)
    assert got["sha_main"] == got["c3"]
    messages = [registry_message(registry, REPO, n) for n in (1, 2, 3)]
    assert messages == ["first upload\n\nfrom a folder", "readme", "drop the readme"]
    assert all(v.pushed_by == server.admin for v in made)  # the token's user

    errors = got["errors"]
    assert errors["stale"][0] == 409 and "parentCommit" in errors["stale"][2]
    assert errors["pickle"][0] == 422 and "pickle_refused" in errors["pickle"][2]
    assert errors["pickle_new_repo"][0] == 422 and "pickle_refused" in errors["pickle_new_repo"][2]
    assert errors["bad_config"][0] == 422 and "unknown_peft_type" in errors["bad_config"][2]
    assert errors["missing_delete"][0] == 404
    # Nothing stored by any refusal: still three versions, no acme/evil.
    assert [v.version for v in versions(registry, REPO)] == [1, 2, 3]
    assert versions(registry, "acme/evil") == []
    http = httpx.Client(base_url=server.url, timeout=30)
    assert http.get("/api/models/acme/evil").status_code == 404


def registry_message(reg: Registry, repo: str, number: int) -> str | None:
    from registry.refs import Ref, parse_repo
    from registry.services.versions import resolve

    return resolve(reg, Ref(parse_repo(repo), version=number), principal=OPERATOR).message


def _commit(http: httpx.Client, repo: str, lines: list[dict[str, Any]]) -> httpx.Response:
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    return http.post(
        f"/api/models/{repo}/commit/main", content=body, headers={"Content-Type": "application/x-ndjson"}
    )


@pytest.mark.parametrize("bad", ["\uff0e\uff0e/escape.json", "a\uff0fb.json", "\uff23\uff2f\uff2e.json"])
def test_commit_refuses_paths_unsafe_after_nfkc(
    bad: str, server: ServerThread, registry: Registry, lora_a: Path
) -> None:
    """A Hub commit naming a path whose NFKC form is unsafe (`．．` reads `..`) is refused with
    its code and stores nothing; the same commit without it is a version."""
    http = httpx.Client(base_url=server.url, timeout=30, headers=server.auth)

    def inline(path: str, data: bytes) -> dict[str, Any]:
        content = base64.b64encode(data).decode()
        return {"key": "file", "value": {"path": path, "encoding": "base64", "content": content}}

    lines = [
        {"key": "header", "value": {"summary": "adapter"}},
        inline("adapter_config.json", (lora_a / "adapter_config.json").read_bytes()),
        inline("adapter_model.safetensors", (lora_a / "adapter_model.safetensors").read_bytes()),
    ]
    answer = _commit(http, REPO, [*lines, inline(bad, b"{}")])
    assert answer.status_code == 422, answer.text
    assert "unsafe_path" in answer.headers["x-error-message"]
    assert "NFKC" in answer.headers["x-error-message"]
    assert versions(registry, REPO) == []
    assert _commit(http, REPO, lines).status_code == 200
    assert [v.version for v in versions(registry, REPO)] == [1]


@pytest.fixture
def small_chunks(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ServerThread, Registry]]:
    """SQLite and file blobs, with parts of 4 KiB so that a small adapter goes up in several."""
    settings = make_settings(tmp_path, db_url_for("sqlite", tmp_path, request), "file", request)
    settings = settings.model_copy(update={"hub_multipart_chunk_bytes": 4096})
    reg = Registry.from_settings(settings, migrate=True)
    with ServerThread(create_app(settings, reg)) as srv:
        yield srv, reg
    reg.close()


def test_raw_protocol_urls_multipart_and_unsafe_paths(
    small_chunks: tuple[ServerThread, Registry], lora_a: Path, tmp_path: Path
) -> None:
    server, reg = small_chunks
    make_public(reg, "acme")
    http = httpx.Client(base_url=server.url, timeout=30, headers=server.auth)
    bare = httpx.Client(base_url=server.url, timeout=30)  # what the client sends to upload URLs
    weights = (lora_a / "adapter_model.safetensors").read_bytes()
    config = (lora_a / "adapter_config.json").read_bytes()
    oid = hashlib.sha256(weights).hexdigest()
    assert len(weights) > 4096

    # Only Xet offered to the LFS batch: refused, naming the Xet token route instead.
    xet = http.post(
        f"/{REPO}.git/info/lfs/objects/batch",
        json={"operation": "upload", "transfers": ["xet"], "objects": [{"oid": oid, "size": len(weights)}]},
    )
    assert xet.status_code == 400 and "xet-write-token" in xet.headers["x-error-message"]
    assert "HF_HUB_DISABLE_XET" not in xet.headers["x-error-message"]

    batch = http.post(
        f"/{REPO}.git/info/lfs/objects/batch",
        json={"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": len(weights)}]},
    ).json()
    assert batch["transfer"] == "basic"
    href = batch["objects"][0]["actions"]["upload"]["href"]
    path = href.removeprefix(server.url)
    query = parse_qs(urlsplit(href).query)
    who = (query["user"][0], query["token"][0])  # the identity of the batch call's token, signed
    assert who[0] and who[1]
    # Tampered (another size, another signature) and expired URLs are refused; no auth is needed.
    assert bare.put(path.replace("sig=", "sig=0"), content=weights).status_code == 403
    wrong = path.replace(f"/{len(weights)}?", f"/{len(weights) - 1}?")
    assert bare.put(wrong, content=weights[:-1]).status_code == 403
    secret = Signer(load_secret_key(reg_settings(server)), 60)
    past = int(time.time()) - 10
    expired = (
        f"/api/lfs-upload/{oid}/{len(weights)}?expires={past}&user={who[0]}&token={who[1]}"
        f"&sig={secret.sign(past, oid, str(len(weights)), *who)}"
    )
    refused = bare.put(expired, content=weights)
    assert refused.status_code == 403 and "expired" in refused.headers["x-error-message"]
    # Other bytes: refused, nothing stored.
    other = bytes(reversed(weights))
    assert bare.put(path, content=other).status_code == 422
    assert reg.store.stat(f"sha256:{oid}") is None
    assert bare.put(path, content=weights).status_code == 200
    assert bare.put(path, content=other).status_code == 403  # reuse for other bytes: refused
    assert bare.put(path, content=weights).status_code == 200  # the same bytes again: a no-op
    again = http.post(
        f"/{REPO}.git/info/lfs/objects/batch",
        json={"operation": "upload", "objects": [{"oid": oid, "size": len(weights)}]},
    ).json()
    assert "actions" not in again["objects"][0]  # held: nothing to upload

    # An unsafe path in a commit: refused with its code, nothing stored.
    inline = {
        "key": "file",
        "value": {
            "path": "adapter_config.json",
            "encoding": "base64",
            "content": base64.b64encode(config).decode(),
        },
    }
    lfs = {
        "key": "lfsFile",
        "value": {"path": "adapter_model.safetensors", "algo": "sha256", "oid": oid, "size": len(weights)},
    }
    for bad in ("../escape.json", "a/../../x.json", "/abs.json"):
        answer = _commit(
            http,
            REPO,
            [
                {"key": "header", "value": {"summary": "bad"}},
                inline,
                lfs,
                {"key": "file", "value": {"path": bad, "content": "e30="}},
            ],
        )
        assert answer.status_code == 422, bad
        assert "unsafe_path" in answer.headers["x-error-message"], bad
    assert versions(reg, REPO) == []
    # A commit refused for its message (NUL, or over the column) stores none of its inline files.
    readme = b"# refused for its summary\n"
    readme_digest = "sha256:" + hashlib.sha256(readme).hexdigest()
    readme_line = {
        "key": "file",
        "value": {"path": "README.md", "encoding": "base64", "content": base64.b64encode(readme).decode()},
    }
    for summary in ("bad\u0000summary", "x" * 20_000):
        answer = _commit(
            http, REPO, [{"key": "header", "value": {"summary": summary}}, inline, lfs, readme_line]
        )
        assert answer.status_code == 422, answer.text
        assert reg.store.stat(readme_digest) is None
    assert versions(reg, REPO) == []
    good = _commit(http, REPO, [{"key": "header", "value": {"summary": "raw"}}, inline, lfs])
    assert good.status_code == 200 and good.json()["version"] == 1

    # Multipart (the server's chunk size): the real client, then the blob is whole and verified.
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "adapter_model.safetensors").write_bytes(weights)
    big = _perturbed(weights)
    (tmp_path / "big" / "adapter_model.safetensors").write_bytes(big)
    got = run_client(
        server.url,
        tmp_path / "hf",
        f"""
        import logging
        from huggingface_hub import lfs
        seen = []
        original = lfs._upload_multi_part
        def spy(**kw):
            seen.append(kw["chunk_size"])
            return original(**kw)
        lfs._upload_multi_part = spy
        api = hf.HfApi()
        info = api.upload_file(path_or_fileobj="{tmp_path / "big" / "adapter_model.safetensors"}",
                               path_in_repo="adapter_model.safetensors", repo_id="{REPO}",
                               commit_message="multipart")
        out([info.oid, seen])
        """,
        HF_TOKEN=server.token,
    )
    assert got[1] == [4096]
    made = versions(reg, REPO)
    assert [v.version for v in made] == [1, 2] and made[1].digest.removeprefix("sha256:")[:40] == got[0]
    big_digest = "sha256:" + hashlib.sha256(big).hexdigest()
    assert files_of(reg, REPO, 2)["adapter_model.safetensors"] == big_digest
    assert b"".join(reg.store.open(big_digest)) == big
    assert PartStore.of(reg.store).staging.uploads() == []  # parts cleaned up from the store


def reg_settings(server: ServerThread) -> Any:
    return server.server.config.app.state.settings


def _perturbed(weights: bytes) -> bytes:
    """The same safetensors file with its last tensor byte changed: valid, other content."""
    return weights[:-1] + bytes([weights[-1] ^ 1])


def test_without_disable_xet_the_client_uploads(
    server_sqlite: ServerThread, lora_a: Path, tmp_path: Path
) -> None:
    """huggingface_hub 2.x picks Xet without asking the server: the registry speaks it (CAS tokens,
    xorbs, shards; tests/hub/test_hub_xet.py), so a default install uploads."""
    got = run_client(
        server_sqlite.url,
        tmp_path / "hf",
        f"""
        api = hf.HfApi()
        api.upload_folder(repo_id="{REPO}", folder_path="{lora_a}")
        out(api.model_info("{REPO}").sha)
        """,
        HF_HUB_DISABLE_XET="",
        HF_TOKEN=server_sqlite.token,
    )
    assert isinstance(got, str) and len(got) == 40
    answer = httpx.get(
        f"{server_sqlite.url}/api/models/{REPO}/xet-write-token/main", headers=server_sqlite.auth
    )
    assert answer.status_code == 200 and answer.json()["casUrl"].endswith("/api/xet-cas")


@pytest.fixture
def server_sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerThread]:
    settings = make_settings(tmp_path, db_url_for("sqlite", tmp_path, request), "file", request)
    reg = Registry.from_settings(settings, migrate=True)
    with ServerThread(create_app(settings, reg)) as srv:
        yield srv
    reg.close()


@pytest.fixture(params=resource_params("sqlite-file", "postgresql-s3"))
def hub_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ServerThread, Registry]]:
    db, backend = str(request.param).split("-")
    settings = make_settings(tmp_path, db_url_for(db, tmp_path, request), backend, request)
    reg = Registry.from_settings(settings, migrate=True)
    with ServerThread(create_app(settings, reg)) as srv:
        yield srv, reg
    reg.close()


def test_peft_push_to_hub_then_from_pretrained(
    hub_server: tuple[ServerThread, Registry], tmp_path: Path
) -> None:
    """PeftModel.push_to_hub from a real tiny model, then PeftModel.from_pretrained through the
    endpoint: the same logits (exact: the same weights on the same CPU kernels)."""
    server, reg = hub_server
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
        url = model.push_to_hub("acme/pushed", commit_message="from PEFT")
        loaded = PeftModel.from_pretrained(tiny_llama(), "acme/pushed")
        loaded.eval()
        with torch.no_grad():
            have = loaded(ids).logits
        out([float((have - want).abs().max()), str(url)])
        """,
        HF_TOKEN=server.token,
    )
    assert got[0] == 0.0
    made = versions(reg, "acme/pushed")
    assert [v.version for v in made] == [1] and made[0].peft_type == "LORA"
    assert registry_message(reg, "acme/pushed", 1) == "from PEFT"


def test_trainer_push_to_hub(hub_server: tuple[ServerThread, Registry], tmp_path: Path) -> None:
    """transformers' Trainer.push_to_hub, unchanged: the adapter becomes a version; the pickled
    training_args.bin it uploads beside it is left out (preupload's shouldIgnore), never stored."""
    server, reg = hub_server
    make_public(reg, "acme")
    got = run_client(
        server.url,
        tmp_path / "hf",
        f"""
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import Trainer, TrainingArguments
        from tests.adapters_factory import tiny_llama
        torch.manual_seed(0)
        model = get_peft_model(tiny_llama(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                         task_type="CAUSAL_LM"))
        ids = torch.randint(0, 100, (4, 8))
        data = [{{"input_ids": row, "labels": row}} for row in ids]
        args = TrainingArguments(output_dir={str(tmp_path / "out")!r}, max_steps=1, per_device_train_batch_size=2,
                                 report_to=[], use_cpu=True, hub_model_id="acme/trained", save_strategy="no")
        trainer = Trainer(model=model, args=args, train_dataset=data)
        trainer.train()
        trainer.push_to_hub(commit_message="from Trainer")
        out("ok")
        """,
        HF_TOKEN=server.token,
    )
    assert got == "ok"
    made = versions(reg, "acme/trained")
    assert [v.version for v in made] == [1] and made[0].peft_type == "LORA"
    files = files_of(reg, "acme/trained", 1)
    assert "adapter_model.safetensors" in files and "training_args.bin" not in files
    assert registry_message(reg, "acme/trained", 1) == "from Trainer"


# ---------------------------------------------------------------- access control
def _user(reg: Registry, name: str, grants: dict[str, str], read_only: bool = False) -> dict[str, str]:
    """A user with these grants, and the Authorization header of a new token of theirs."""
    from registry.services import accounts

    if name not in {u.name for u in accounts.list_users(reg, principal=OPERATOR)}:
        accounts.add_user(reg, name, principal=OPERATOR)
    for namespace, role in grants.items():
        accounts.grant(reg, name, namespace, role, principal=OPERATOR)
    secret, _ = accounts.create_token(reg, name, read_only=read_only, principal=OPERATOR)
    return {"Authorization": f"Bearer {secret}"}


def _user_id(reg: Registry, name: str) -> int:
    from registry.services import accounts

    return next(u.id for u in accounts.list_users(reg, principal=OPERATOR) if u.name == name)


def _proofs(reg: Registry, digest: str) -> set[int]:
    """The users whose proof of possession of `digest` is recorded."""
    from sqlalchemy import select

    from registry.db import models as m
    from registry.db.engine import unit_of_work

    with unit_of_work(reg.sessions) as session:
        return set(session.scalars(select(m.BlobUpload.user_id).where(m.BlobUpload.digest == digest)))


def _batch(http: httpx.Client, repo: str, oid: str, size: int) -> httpx.Response:
    return http.post(
        f"/{repo}.git/info/lfs/objects/batch",
        json={"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": size}]},
    )


def test_write_needs_a_token_with_write_on_the_namespace(
    hub_server: tuple[ServerThread, Registry], lora_a: Path
) -> None:
    """Every Hub write needs write on the repository's namespace: anonymous 401 (with
    WWW-Authenticate), may read but not write 403, may not read RepoNotFound; the Hub's error
    headers on each. The token's user is who pushed."""
    server, reg = hub_server
    anon = httpx.Client(base_url=server.url, timeout=30)
    writer = httpx.Client(base_url=server.url, timeout=30, headers=_user(reg, "alice", {"acme": "write"}))
    reader = httpx.Client(base_url=server.url, timeout=30, headers=_user(reg, "rita", {"acme": "read"}))
    read_only = httpx.Client(base_url=server.url, timeout=30, headers=_user(reg, "alice", {}, read_only=True))
    stranger = httpx.Client(base_url=server.url, timeout=30, headers=_user(reg, "olga", {"other": "write"}))
    weights = (lora_a / "adapter_model.safetensors").read_bytes()
    config = (lora_a / "adapter_config.json").read_bytes()
    oid = hashlib.sha256(weights).hexdigest()
    lines = [
        {"key": "header", "value": {"summary": "first"}},
        {
            "key": "file",
            "value": {"path": "adapter_config.json", "content": base64.b64encode(config).decode()},
        },
        {
            "key": "lfsFile",
            "value": {
                "path": "adapter_model.safetensors",
                "algo": "sha256",
                "oid": oid,
                "size": len(weights),
            },
        },
    ]

    def calls(http: httpx.Client) -> list[httpx.Response]:
        return [
            http.post("/api/repos/create", json={"name": "hubbed", "organization": "acme", "type": "model"}),
            http.post(
                f"/api/models/{REPO}/preupload/main",
                json={"files": [{"path": "adapter_config.json", "size": len(config), "sample": ""}]},
            ),
            _batch(http, REPO, oid, len(weights)),
            _commit(http, REPO, lines),
        ]

    for answer in calls(anon):
        assert answer.status_code == 401, answer.text
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert answer.headers["x-error-code"] == "Unauthenticated"
        assert answer.headers["x-error-message"].startswith("unauthenticated: ")
    for who in (reader, read_only):
        for answer in calls(who):
            assert answer.status_code == 403, answer.text
            assert answer.headers["x-error-code"] == "Forbidden"
    for answer in calls(stranger):
        assert answer.status_code == 404, answer.text
        assert answer.headers["x-error-code"] == "RepoNotFound"
        assert "www-authenticate" not in answer.headers
    assert versions(reg, REPO) == []
    assert anon.get(f"/api/models/{REPO}").status_code == 404  # create_repo made nothing either

    # The writer: create, upload to the signed URL (no credentials), commit; pushed_by is alice.
    assert (
        writer.post("/api/repos/create", json={"name": "hubbed", "organization": "acme"}).status_code == 200
    )
    href = _batch(writer, REPO, oid, len(weights)).json()["objects"][0]["actions"]["upload"]["href"]
    assert anon.put(href.removeprefix(server.url), content=weights).status_code == 200
    assert _proofs(reg, f"sha256:{oid}") == {_user_id(reg, "alice")}
    done = _commit(writer, REPO, lines)
    assert done.status_code == 200, done.headers.get("x-error-message")
    assert [v.pushed_by for v in versions(reg, REPO)] == ["alice"]
    # The reader reads it, still may not write it.
    assert reader.get(f"/api/models/{REPO}").status_code == 200
    assert _commit(reader, REPO, lines).status_code == 403


def test_upload_urls_carry_who_asked_and_held_blobs_need_proof(
    hub_server: tuple[ServerThread, Registry], lora_a: Path
) -> None:
    """A signed URL records the proof of the user it was issued to, whoever sends the bytes, and
    cannot be rewritten to name another; a blob the store holds but the caller may not use gets an
    upload action (no digest oracle), and a commit naming it without that upload is refused."""
    server, reg = hub_server
    anon = httpx.Client(base_url=server.url, timeout=30)
    alice = httpx.Client(base_url=server.url, timeout=30, headers=_user(reg, "alice", {"acme": "write"}))
    mallory = httpx.Client(base_url=server.url, timeout=30, headers=_user(reg, "mallory", {"evil": "write"}))
    alice_id, mallory_id = _user_id(reg, "alice"), _user_id(reg, "mallory")
    weights = (lora_a / "adapter_model.safetensors").read_bytes()
    config = (lora_a / "adapter_config.json").read_bytes()
    oid = hashlib.sha256(weights).hexdigest()
    digest = f"sha256:{oid}"

    href = _batch(alice, REPO, oid, len(weights)).json()["objects"][0]["actions"]["upload"]["href"]
    path = href.removeprefix(server.url)
    assert f"user={alice_id}&" in path
    # Rewritten to name mallory: not a URL the registry issued.
    forged = mallory.put(path.replace(f"user={alice_id}&", f"user={mallory_id}&"), content=weights)
    assert forged.status_code == 403 and forged.headers["x-error-code"] == "UploadUrlRefused"
    assert reg.store.stat(digest) is None
    # Replayed by mallory (her own token on the request, which the upload URL ignores): alice's proof.
    assert mallory.put(path, content=weights).status_code == 200
    assert _proofs(reg, digest) == {alice_id}
    assert mallory.put(path, content=weights).status_code == 200  # again: still nothing for her
    assert _proofs(reg, digest) == {alice_id}

    # The store holds it, but mallory may not use it: her batch asks for the bytes.
    mine = _batch(mallory, "evil/x", oid, len(weights)).json()["objects"][0]
    assert "upload" in mine["actions"]
    lines = [
        {"key": "header", "value": {"summary": "borrowed"}},
        {
            "key": "file",
            "value": {"path": "adapter_config.json", "content": base64.b64encode(config).decode()},
        },
        {
            "key": "lfsFile",
            "value": {
                "path": "adapter_model.safetensors",
                "algo": "sha256",
                "oid": oid,
                "size": len(weights),
            },
        },
    ]
    borrowed = _commit(mallory, "evil/x", lines)
    assert borrowed.status_code == 409 and borrowed.headers["x-error-code"] == "BlobMissing"
    assert versions(reg, "evil/x") == []
    # Alice, who uploaded it, is told nothing to do.
    assert "actions" not in _batch(alice, REPO, oid, len(weights)).json()["objects"][0]

    # Mallory sends the bytes to her own URL: proof recorded, the blob is hers to use.
    assert (
        anon.put(mine["actions"]["upload"]["href"].removeprefix(server.url), content=weights).status_code
        == 200
    )
    assert _proofs(reg, digest) == {alice_id, mallory_id}
    assert "actions" not in _batch(mallory, "evil/x", oid, len(weights)).json()["objects"][0]
    done = _commit(mallory, "evil/x", lines)
    assert done.status_code == 200, done.headers.get("x-error-message")
    assert [v.pushed_by for v in versions(reg, "evil/x")] == ["mallory"]

    # A URL issued through a token revoked since uploads nothing.
    from registry.services import accounts

    secret, info = accounts.create_token(reg, "alice", principal=OPERATOR)
    other = _perturbed(weights)
    oid2 = hashlib.sha256(other).hexdigest()
    late = httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {secret}"})
    href = _batch(late, REPO, oid2, len(other)).json()["objects"][0]["actions"]["upload"]["href"]
    accounts.revoke_token(reg, info.id, principal=OPERATOR)
    revoked = anon.put(href.removeprefix(server.url), content=other)
    assert revoked.status_code == 401 and revoked.headers["x-error-code"] == "Unauthenticated"
    assert reg.store.stat(f"sha256:{oid2}") is None


def test_multipart_completion_records_the_proof(
    small_chunks: tuple[ServerThread, Registry], lora_a: Path
) -> None:
    server, reg = small_chunks
    alice = httpx.Client(base_url=server.url, timeout=30, headers=_user(reg, "alice", {"acme": "write"}))
    anon = httpx.Client(base_url=server.url, timeout=30)
    weights = (lora_a / "adapter_model.safetensors").read_bytes()
    oid = hashlib.sha256(weights).hexdigest()
    batch = alice.post(
        f"/{REPO}.git/info/lfs/objects/batch",
        json={
            "operation": "upload",
            "transfers": ["multipart"],
            "objects": [{"oid": oid, "size": len(weights)}],
        },
    ).json()
    upload = batch["objects"][0]["actions"]["upload"]
    chunk = int(upload["header"]["chunk_size"])
    parts = []
    for n in range(1, -(-len(weights) // chunk) + 1):
        url = upload["header"][str(n)].removeprefix(server.url)
        put = anon.put(url, content=weights[(n - 1) * chunk : n * chunk])
        assert put.status_code == 200
        parts.append({"partNumber": n, "etag": put.headers["etag"]})
    assert _proofs(reg, f"sha256:{oid}") == set()  # parts prove nothing until they are whole
    done = anon.post(upload["href"].removeprefix(server.url), json={"oid": oid, "parts": parts})
    assert done.status_code == 200, done.text
    assert _proofs(reg, f"sha256:{oid}") == {_user_id(reg, "alice")}


def test_real_client_without_write_is_refused(
    small_chunks: tuple[ServerThread, Registry], lora_a: Path, tmp_path: Path
) -> None:
    """huggingface_hub itself: no HF_TOKEN 401, a read-only token 403, a writer of another
    namespace RepositoryNotFoundError; nothing recorded."""
    server, reg = small_chunks  # acme is private: only its readers know it exists
    _, token = _user(reg, "rita", {"acme": "write"}, read_only=True)["Authorization"].split(" ")
    _, other = _user(reg, "olga", {"other": "write"})["Authorization"].split(" ")
    code = f"""
        api = hf.HfApi()
        res = {{}}
        for name, call in [
            ("create", lambda: api.create_repo("{REPO}")),
            ("upload", lambda: api.upload_folder(repo_id="{REPO}", folder_path="{lora_a}")),
        ]:
            try:
                call()
                res[name] = None
            except hf_errors.HfHubHTTPError as err:
                res[name] = [type(err).__name__, err.response.status_code,
                             err.response.headers.get("www-authenticate"), err.response.headers.get("x-error-code")]
        out(res)
        """
    anonymous = run_client(server.url, tmp_path / "hf-anon", code)
    assert anonymous["create"][1:] == [401, 'Bearer realm="adapter-registry"', "Unauthenticated"]
    assert anonymous["upload"][1] == 401 and anonymous["upload"][2].startswith("Bearer")
    reading = run_client(server.url, tmp_path / "hf-read", code, HF_TOKEN=token)
    assert reading["create"][1:] == [403, None, "Forbidden"] and reading["upload"][1] == 403
    elsewhere = run_client(server.url, tmp_path / "hf-other", code, HF_TOKEN=other)
    assert elsewhere["create"][1] == 404 and elsewhere["create"][3] == "RepoNotFound"
    assert elsewhere["upload"][0] == "RepositoryNotFoundError"
    assert versions(reg, REPO) == []
