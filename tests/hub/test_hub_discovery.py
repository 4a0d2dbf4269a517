"""The Hub's discovery calls through the real huggingface_hub client (and `hf models ls`) against a
real server, on SQLite and PostgreSQL: list_models, list_repo_commits, get_paths_info, model cards
and download counts, and what a reader without rights does not see."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select

from registry.access.principal import OPERATOR, Principal
from registry.api import create_app
from registry.client.bases import add_base_folder
from registry.client.http import HttpClient
from registry.client.local import LocalClient
from registry.client.transfer import push_folder
from registry.config import Settings
from registry.db import models as m
from registry.db.engine import unit_of_work
from registry.services import accounts
from registry.services.context import Registry
from registry.services.downloads import DownloadCounter
from tests.access.test_matrix import tiny_adapter
from tests.conftest import ServerThread, db_url_for, make_settings, resource_params
from tests.hub.clients import run_client

pytestmark = pytest.mark.server

CARD = """---
license: mit
language: en
datasets:
  - acme/cases
tags:
  - contracts
extra:
  when: 2024-01-02
---
# legal

An adapter for contracts.
"""


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.adapters_factory import sized_llama

    folder = tmp_path_factory.mktemp("discovery") / "tiny"
    sized_llama(hidden=8).save_pretrained(folder)  # q_proj 8 -> 8, what tiny_adapter fits
    return folder


@pytest.fixture(params=resource_params("sqlite", "postgresql"))
def settings_db(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    return make_settings(tmp_path, db_url_for(str(request.param), tmp_path, request), "file", request)


def seed(url: str, reg: Registry, token: str, tmp_path: Path, base_folder: Path) -> dict[str, str]:
    """acme/legal:1 (alias production) and :2 (a README with a card), acme/summ, the uploaded base
    acme/tiny, secret/hidden (only admins read it) and pub/open (public); bob reads acme."""
    client = HttpClient(url, user="tester", cache_dir=tmp_path / "push-cache", token=token)
    add_base_folder(client, base_folder, ["acme/tiny"], upload=True)
    legal = tiny_adapter(tmp_path / "legal", 1)
    config = json.loads((legal / "adapter_config.json").read_text())
    (legal / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "acme/tiny"}))
    first = push_folder(
        client,
        legal,
        "acme/legal",
        task="legal",
        aliases=["production"],
        message="First cut\n\nThe <long> story",
    )
    (legal / "README.md").write_text(CARD)
    (legal / "docs").mkdir()
    (legal / "docs" / "notes.md").write_text("notes\n")
    second = push_folder(client, legal, "acme/legal", task="legal", message="Add the card")
    push_folder(client, tiny_adapter(tmp_path / "summ", 2), "acme/summ", task="summarize")
    push_folder(client, tiny_adapter(tmp_path / "hidden", 3), "secret/hidden")
    push_folder(client, tiny_adapter(tmp_path / "open", 4), "pub/open")
    accounts.set_namespace_visibility(reg, "pub", True, principal=OPERATOR)
    accounts.add_user(reg, "bob", principal=OPERATOR)
    accounts.grant(reg, "bob", "acme", "read", principal=OPERATOR)
    bob, _ = accounts.create_token(reg, "bob", name="bob", principal=OPERATOR)
    return {
        "v1": first.digest.removeprefix("sha256:")[:40],
        "v2": second.digest.removeprefix("sha256:")[:40],
        "bob": bob,
    }


ADMIN_CALLS = """
api = hf.HfApi()
res = {}
hf.hf_hub_download("acme/summ", "adapter_config.json")
hf.hf_hub_download("acme/summ", "adapter_config.json")  # cached: a HEAD only, not a download
hf.hf_hub_download("acme/summ", "adapter_config.json", force_download=True)
hf.snapshot_download("acme/legal")  # every file, adapter_config.json once: one download
hf.hf_hub_download("acme/tiny", "config.json")
api.create_repo("acme/empty")
ids = lambda **kw: [m.id for m in api.list_models(**kw)]
res["all"] = ids()
res["author"] = ids(author="acme")
res["search"] = ids(search="LEG")
res["task"] = ids(filter="summarize")
res["card_tag"] = ids(filter=["peft", "license:mit"])
res["library"] = ids(filter="transformers")
res["pipeline"] = ids(pipeline_tag="text-generation")
res["by_downloads"] = ids(sort="downloads", limit=3)
res["newest"] = ids(sort="created_at", limit=1)
res["gated"] = ids(gated=True)
res["not_gated"] = len(ids(gated=False))
legal = next(iter(api.list_models(search="acme/legal", cardData=True)))
res["listed_card"] = legal.card_data.to_dict() if legal.card_data else None
full = next(iter(api.list_models(search="acme/legal", full=True)))
res["full"] = dict(siblings=sorted(s.rfilename for s in full.siblings), sha=full.sha,
                   modified=str(full.last_modified), downloads=full.downloads)
exp = next(iter(api.list_models(search="acme/summ", expand=["downloads", "sha"])))
res["expand"] = dict(downloads=exp.downloads, sha=exp.sha, tags=exp.tags, private=exp.private)
info = api.model_info("acme/legal")
res["info"] = dict(downloads=info.downloads, tags=info.tags, card=info.card_data.to_dict())
res["info_v1"] = api.model_info("acme/legal", revision="1").card_data.to_dict()
res["info_tiny"] = api.model_info("acme/tiny").downloads
from huggingface_hub.utils._pagination import paginate
res["pages"] = [m["id"] for m in paginate(hf.constants.ENDPOINT + "/api/models",
                params={"limit": 2, "sort": "downloads"}, headers=hf.utils.build_hf_headers())]
def commits(*args, **kw):
    return [dict(id=c.commit_id, title=c.title, message=c.message, authors=c.authors,
                 date=str(c.created_at), html=c.formatted_title) for c in api.list_repo_commits(*args, **kw)]
res["commits"] = commits("acme/legal")
res["commits_prod"] = commits("acme/legal", revision="production")
res["commits_formatted"] = commits("acme/legal", revision="1", formatted=True)
res["commits_base"] = commits("acme/tiny")
res["commits_empty"] = commits("acme/empty")
refs = api.list_repo_refs("acme/legal")
res["refs"] = {t.name: t.target_commit for t in refs.tags}
def paths(*args, **kw):
    return [[type(e).__name__, e.path, getattr(e, "size", None),
             e.last_commit.oid if e.last_commit else None] for e in api.get_paths_info(*args, **kw)]
res["paths"] = paths("acme/legal", ["README.md", "docs", "nope", "adapter_config.json", "docs/notes.md"])
res["paths_expand"] = paths("acme/legal", ["README.md", "docs", "adapter_config.json"], expand=True)
res["paths_v1"] = paths("acme/legal", ["README.md", "adapter_config.json"], revision="1")
res["paths_base"] = paths("acme/tiny", ["config.json"], expand=True)
errors = {}
for name, call in [
    ("commits_repo", lambda: api.list_repo_commits("acme/nothing")),
    ("commits_revision", lambda: api.list_repo_commits("acme/legal", revision="staging")),
    ("paths_repo", lambda: api.get_paths_info("acme/nothing", ["README.md"])),
    ("paths_revision", lambda: api.get_paths_info("acme/legal", ["README.md"], revision="9")),
]:
    try:
        call()
        errors[name] = None
    except Exception as err:
        errors[name] = type(err).__name__
res["errors"] = errors
import os, subprocess
hf_cli = os.path.join(os.path.dirname(sys.executable), "hf")
cli = subprocess.run([hf_cli, "models", "ls", "--author", "acme", "--sort", "downloads", "--format", "json"],
                     capture_output=True, text=True)
res["cli"] = [cli.returncode, cli.stdout, cli.stderr[-2000:]]
out(res)
"""

OUTSIDER_CALLS = """
api = hf.HfApi()
res = {"all": sorted(m.id for m in api.list_models()),
       "author": [m.id for m in api.list_models(author="secret")],
       "search": [m.id for m in api.list_models(search="hidden")],
       "filter": [m.id for m in api.list_models(filter="peft", sort="downloads")]}
errors = {}
for name, call in [
    ("info", lambda: api.model_info("secret/hidden")),
    ("commits", lambda: api.list_repo_commits("secret/hidden")),
    ("paths", lambda: api.get_paths_info("secret/hidden", ["adapter_config.json"])),
    ("commits_acme", lambda: api.list_repo_commits("acme/legal")),
]:
    try:
        call()
        errors[name] = None
    except Exception as err:
        errors[name] = type(err).__name__
res["errors"] = errors
out(res)
"""


def test_discovery_through_huggingface_hub(settings_db: Settings, tmp_path: Path, base_folder: Path) -> None:
    reg = Registry.from_settings(settings_db, migrate=True)
    with ServerThread(create_app(settings_db, reg)) as srv:
        seeded = seed(srv.url, reg, srv.token, tmp_path, base_folder)
        got = run_client(srv.url, tmp_path / "hf", ADMIN_CALLS, HF_TOKEN=srv.token)
        bob = run_client(srv.url, tmp_path / "hf-bob", OUTSIDER_CALLS, HF_TOKEN=seeded["bob"])
        anonymous = run_client(srv.url, tmp_path / "hf-anon", OUTSIDER_CALLS)
        http = httpx.Client(base_url=srv.url, timeout=30, headers=srv.auth)
        raw = check_raw_http(http, seeded)
    v1, v2 = seeded["v1"], seeded["v2"]
    everything = ["acme/empty", "acme/legal", "acme/summ", "acme/tiny", "pub/open", "secret/hidden"]
    assert got["all"] == everything  # by id without a sort
    assert got["author"] == everything[:4]
    assert got["search"] == ["acme/legal"]  # in the id, any case
    assert got["task"] == ["acme/summ"]
    assert got["card_tag"] == ["acme/legal"]  # a tag from the README's front matter
    assert got["library"] == ["acme/tiny"]
    assert got["pipeline"] == ["acme/legal", "acme/summ", "acme/tiny", "pub/open", "secret/hidden"]
    assert got["by_downloads"] == ["acme/summ", "acme/legal", "acme/tiny"]  # 2, 1, 1 (then by id)
    assert got["newest"] == ["acme/empty"]
    assert got["gated"] == [] and got["not_gated"] == len(everything)
    assert got["listed_card"]["license"] == "mit" and "contracts" in got["listed_card"]["tags"]
    assert got["full"]["siblings"] == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "docs/notes.md",
    ]
    assert got["full"]["sha"] == v2 and got["full"]["downloads"] == 1 and got["full"]["modified"] != "None"
    assert got["expand"] == {"downloads": 2, "sha": got["expand"]["sha"], "tags": None, "private": None}
    info = got["info"]
    assert info["downloads"] == 1
    assert {"peft", "lora", "legal", "contracts", "license:mit", "dataset:acme/cases", "en"} <= set(
        info["tags"]
    )
    assert info["card"]["license"] == "mit" and info["card"]["extra"] == {"when": "2024-01-02"}
    assert info["card"]["base_model"] == "acme/tiny" and info["card"]["library_name"] == "peft"
    assert "license" not in got["info_v1"]  # version 1 has no README
    assert got["info_tiny"] == 1
    assert got["pages"] == ["acme/summ", "acme/legal", "acme/tiny", "acme/empty", "pub/open", "secret/hidden"]

    assert [c["id"] for c in got["commits"]] == [v2, v1]  # newest first, the ids every route uses
    assert got["refs"] == {"1": v1, "2": v2}
    assert [c["title"] for c in got["commits"]] == ["Add the card", "First cut"]
    assert got["commits"][1]["message"] == "The <long> story" and got["commits"][0]["message"] == ""
    assert all(c["authors"] == ["tester"] and c["date"] != "None" for c in got["commits"])
    assert [c["id"] for c in got["commits_prod"]] == [v1]
    assert got["commits_formatted"][0]["html"] == "First cut"
    assert len(got["commits_base"]) == 1 and len(got["commits_empty"]) == 1

    assert got["paths"] == [
        ["RepoFile", "README.md", len(CARD), None],
        ["RepoFolder", "docs", None, None],
        [
            "RepoFile",
            "adapter_config.json",
            (tmp_path / "legal" / "adapter_config.json").stat().st_size,
            None,
        ],
        ["RepoFile", "docs/notes.md", 6, None],
    ]
    assert [[e[1], e[3]] for e in got["paths_expand"]] == [
        ["README.md", v2],
        ["docs", v2],
        ["adapter_config.json", v1],  # unchanged since version 1
    ]
    assert [e[1] for e in got["paths_v1"]] == ["adapter_config.json"]
    assert got["paths_base"][0][1] == "config.json" and got["paths_base"][0][3]
    assert got["errors"] == {
        "commits_repo": "RepositoryNotFoundError",
        "commits_revision": "RevisionNotFoundError",
        "paths_repo": "RepositoryNotFoundError",
        "paths_revision": "RevisionNotFoundError",
    }
    code, stdout, stderr = got["cli"]
    assert code == 0, stderr
    assert [row["id"] for row in json.loads(stdout)] == ["acme/summ", "acme/legal", "acme/tiny", "acme/empty"]

    # A reader of acme sees acme and the public namespace; an anonymous one the public one only.
    # What they may not read is neither listed nor answered: the same error as for a missing one.
    assert bob["all"] == ["acme/empty", "acme/legal", "acme/summ", "acme/tiny", "pub/open"]
    assert anonymous["all"] == ["pub/open"]
    for seen in (bob, anonymous):
        assert seen["author"] == [] and seen["search"] == []
        assert "secret/hidden" not in seen["filter"]
        assert seen["errors"]["info"] == seen["errors"]["commits"] == seen["errors"]["paths"]
        assert seen["errors"]["info"] == "RepositoryNotFoundError"
    assert bob["errors"]["commits_acme"] is None
    assert anonymous["errors"]["commits_acme"] == "RepositoryNotFoundError"
    assert raw["anonymous"] == [("pub/open", False)]  # a public namespace: not private

    # The counts were written when the server stopped: a new server on the same database shows them.
    reg.close()
    again = Registry.from_settings(settings_db)
    with ServerThread(create_app(settings_db, again)) as srv2:
        http = httpx.Client(base_url=srv2.url, timeout=30, headers=srv2.auth)
        listed = {m["id"]: m["downloads"] for m in http.get("/api/models").json()}
        assert http.get("/api/models/acme/summ").json()["downloads"] == 2
    again.close()
    assert listed == {
        "acme/empty": 0,
        "acme/legal": 1,
        "acme/summ": 2,
        "acme/tiny": 1,
        "pub/open": 0,
        "secret/hidden": 0,
    }


def check_raw_http(http: httpx.Client, seeded: dict[str, str]) -> dict[str, Any]:
    """What the client does not show: the Link header's cursor, odd parameters, a JSON paths body."""
    page = http.get("/api/models", params={"limit": 1, "sort": "lastModified"})
    assert page.status_code == 200 and len(page.json()) == 1 and page.links["next"]["url"]
    assert http.get("/api/models", params={"cursor": "%%%"}).status_code == 400
    assert http.get("/api/models", params={"sort": "stars"}).status_code == 400
    assert http.get("/api/models", params={"limit": "0"}).status_code == 400
    assert len(http.get("/api/models", params={"limit": "100000"}).json()) == 6  # capped, not refused
    assert http.get("/api/models", params={"apps": "vllm", "num_parameters": "min:1B"}).status_code == 200
    item = http.get("/api/models", params={"search": "acme/legal", "expand": "tags"}).json()[0]
    assert set(item) == {"_id", "id", "modelId", "tags"}
    as_json = http.post(
        "/api/models/acme/legal/paths-info/main", json={"paths": ["README.md", "x"], "expand": True}
    )
    assert as_json.status_code == 200 and [e["path"] for e in as_json.json()] == ["README.md"]
    assert as_json.json()[0]["lastCommit"]["id"] == seeded["v2"]
    refs = http.post("/api/models/acme/legal/paths-info/refs%2Fheads%2Fmain", data={"paths": ["README.md"]})
    assert refs.status_code == 200 and refs.json()[0]["lfs"]["size"] == len(CARD)
    bad = http.post("/api/models/acme/legal/paths-info/main", json={"paths": [1]})
    assert bad.status_code == 400 and bad.headers["x-error-code"]
    # Odd requests are answered 4xx the Hub's way, never 5xx.
    for method, path, body in [
        ("POST", "/api/models/acme/legal/paths-info/main", b"\xff\xfe=\x00"),
        ("POST", "/api/models/acme/legal/paths-info/" + "a" * 300, b"paths=README.md"),
        ("POST", "/api/models/acme/nothing/paths-info/main", b"paths=README.md"),
        ("GET", "/api/models/acme/legal/commits/%E2%80%AEprod", b""),
        ("GET", "/api/models/acme/legal/commits/" + "9" * 30, b""),
        ("GET", "/api/models/acme/legal/commits", b""),
    ]:
        answer = http.request(
            method, path, content=body, headers={"content-type": "application/x-www-form-urlencoded"}
        )
        assert 400 <= answer.status_code < 500 and answer.headers.get("x-error-code"), (method, path)
    commits = http.get("/api/models/acme/legal/commits/main", params={"limit": 1})
    assert [c["id"] for c in commits.json()] == [seeded["v2"]]
    older = http.get(commits.links["next"]["url"])
    assert [c["id"] for c in older.json()] == [seeded["v1"]] and "next" not in older.links
    assert http.get("/api/models/acme/legal/commits/main", params={"after": "x"}).status_code == 400
    anonymous = httpx.get(str(http.base_url.join("/api/models")), params={"search": "o"}).json()
    return {"anonymous": [(e["id"], e["private"]) for e in anonymous]}


def test_download_counts_add_up_across_flushes(settings_db: Settings, tmp_path: Path) -> None:
    """Counts add up across flushes (two counters: two replicas); a repository deleted meanwhile is
    skipped, not an error that would keep every other count pending."""
    reg = Registry.from_settings(settings_db, migrate=True)
    try:
        client = LocalClient(reg, "tester", reg.store, principal=Principal.operator("tester"))
        push_folder(client, tiny_adapter(tmp_path / "a", 1), "acme/a")
        push_folder(client, tiny_adapter(tmp_path / "b", 2), "acme/b")
        with unit_of_work(reg.sessions) as session:
            ids = dict(session.execute(select(m.Repository.name, m.Repository.id)).tuples().all())
        first, second = DownloadCounter(), DownloadCounter()
        for _ in range(3):
            first.add(("repo", ids["a"]))
        second.add(("repo", ids["a"]))
        second.add(("repo", ids["b"]))
        assert first.flush(reg.sessions) == 3 and second.flush(reg.sessions) == 2
        with unit_of_work(reg.sessions) as session:
            session.execute(delete(m.Repository).where(m.Repository.id == ids["b"]))
        first.add(("repo", ids["b"]))
        first.add(("repo", ids["a"]))
        assert first.flush(reg.sessions) == 2 and first.pending(("repo", ids["a"])) == 0
        with unit_of_work(reg.sessions) as session:
            counts = (
                session.execute(select(m.HubDownloads.repository_id, m.HubDownloads.downloads)).tuples().all()
            )
        assert dict(counts) == {ids["a"]: 5}  # b's row went with its repository
    finally:
        reg.close()
