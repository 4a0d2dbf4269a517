"""The Hub write path under hostile or concurrent use (issue 21), through real HTTP against a real
server: one strict JSON reader for every body, `create_repo` audited and its empty repository seen
and removed by `/v1`, the CLI and `delete_repo`, parentless commits serialised instead of refused,
and a commit's files counted before any is decoded or validated."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from cli.main import cli
from registry.api import create_app
from registry.bounds import MAX_VERSION_FILES
from registry.services.context import Registry
from tests.conftest import ServerThread, db_url_for, make_settings, resource_params
from tests.hub.clients import run_client
from tests.hub.test_hub_write import _batch, _commit, files_of, make_public, versions

pytestmark = pytest.mark.server

REPO = "acme/hardened"
DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.fixture(params=resource_params("sqlite-file", "postgresql-s3"))
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ServerThread, Registry]]:
    db, backend = str(request.param).split("-")
    settings = make_settings(tmp_path, db_url_for(db, tmp_path, request), backend, request)
    settings = settings.model_copy(update={"hub_multipart_chunk_bytes": 4096})
    reg = Registry.from_settings(settings, migrate=True)
    with ServerThread(create_app(settings, reg)) as srv:
        yield srv, reg
    reg.close()


def _first_version(http: httpx.Client, server: ServerThread, lora_a: Path) -> None:
    """Version 1 of REPO as the client makes it: the weights through LFS, the config inline."""
    weights = (lora_a / "adapter_model.safetensors").read_bytes()
    config = (lora_a / "adapter_config.json").read_bytes()
    oid = hashlib.sha256(weights).hexdigest()
    href = _batch(http, REPO, oid, len(weights)).json()["objects"][0]["actions"]["upload"]["href"]
    assert httpx.put(href, content=weights, timeout=30).status_code == 200
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
    done = _commit(http, REPO, lines)
    assert done.status_code == 200 and done.json()["version"] == 1, done.text


def _inline(path: str, data: bytes) -> dict[str, Any]:
    return {
        "key": "file",
        "value": {"path": path, "encoding": "base64", "content": base64.b64encode(data).decode()},
    }


def test_every_hub_write_body_is_read_strictly(hub: tuple[ServerThread, Registry], lora_a: Path) -> None:
    """JSON nested 100k deep (a RecursionError, 500, before), NaN, or not UTF-8: 400 `bad_request`
    with the Hub's headers on create_repo, delete_repo, preupload, the LFS batch and completion
    calls and every line of a commit; nothing is created."""
    server, reg = hub
    http = httpx.Client(base_url=server.url, timeout=60, headers=server.auth)
    weights = (lora_a / "adapter_model.safetensors").read_bytes()
    oid = hashlib.sha256(weights).hexdigest()
    multipart = http.post(
        f"/{REPO}.git/info/lfs/objects/batch",
        json={
            "operation": "upload",
            "transfers": ["multipart"],
            "objects": [{"oid": oid, "size": len(weights)}],
        },
    ).json()
    completion = multipart["objects"][0]["actions"]["upload"]["href"].removeprefix(server.url)
    header = json.dumps({"key": "header", "value": {"summary": "deep"}}).encode()
    calls = {
        "create": ("POST", "/api/repos/create"),
        "delete": ("DELETE", "/api/repos/delete"),
        "preupload": ("POST", f"/api/models/{REPO}/preupload/main"),
        "batch": ("POST", f"/{REPO}.git/info/lfs/objects/batch"),
        "complete": ("POST", completion),
    }
    bodies = {
        "deep": DEEP,
        "deep_object": b'{"a":' * 40 + b"1" + b"}" * 40,
        "nan": b'{"name": NaN, "files": [], "operation": "upload"}',
        "latin1": b'{"name": "caf\xe9"}',
    }
    for name, (method, url) in calls.items():
        for kind, body in bodies.items():
            answer = http.request(method, url, content=body, headers={"Content-Type": "application/json"})
            assert answer.status_code == 400, (name, kind, answer.status_code, answer.text[:200])
            assert answer.headers["x-error-code"] == "BadRequest", (name, kind)
            assert answer.headers["x-error-message"].startswith("bad_request: "), (name, kind)
            if kind.startswith("deep"):
                assert "nested deeper than" in answer.headers["x-error-message"], (name, kind)
    for kind, body in bodies.items():
        for lines in ([header, body], [body]):
            answer = http.post(
                f"/api/models/{REPO}/commit/main",
                content=b"\n".join(lines) + b"\n",
                headers={"Content-Type": "application/x-ndjson"},
            )
            assert answer.status_code == 400, (kind, answer.status_code, answer.text[:200])
            assert answer.headers["x-error-code"] == "BadRequest", kind
            assert f"commit line {len(lines)}" in answer.headers["x-error-message"], kind
            if kind.startswith("deep"):
                assert "nested deeper than" in answer.headers["x-error-message"], kind
    assert versions(reg, REPO) == []
    assert http.get(f"/api/models/{REPO}").status_code == 404
    assert http.get("/healthz").status_code == 200


def test_create_repo_is_audited_listed_and_removable(
    hub: tuple[ServerThread, Registry], tmp_path: Path
) -> None:
    """An empty repository made by create_repo is a change like any other (audited), `/v1` lists
    it (latest_version 0), and `adapters rm --all`, `DELETE /v1/repos/...` and the Hub's
    delete_repo remove it, freeing the name; a repository whose versions were deleted stays
    unlisted, as before."""
    server, reg = hub
    make_public(reg, "acme")
    http = httpx.Client(base_url=server.url, timeout=30, headers=server.auth)

    def create() -> httpx.Response:
        return http.post("/api/repos/create", json={"name": "empty", "organization": "acme", "type": "model"})

    def listed() -> dict[str, int]:
        return {r["repo"]: r["latest_version"] for r in http.get("/v1/repos").json()["items"]}

    def actions() -> list[tuple[str, str]]:
        events = http.get("/v1/audit", params={"repo": "acme/empty"}).json()["items"]
        return [(e["action"], e["target"]) for e in events]

    assert create().status_code == 200
    assert actions() == [("repo.create", "acme/empty")]
    assert create().status_code == 409  # exists: no second event
    assert actions() == [("repo.create", "acme/empty")]
    assert listed() == {"acme/empty": 0}
    assert http.get("/api/models/acme/empty").status_code == 200

    # The CLI, against the server.
    env = {
        "ADAPTERS_URL": server.url,
        "ADAPTERS_HOME": str(tmp_path / "cli-home"),
        "ADAPTERS_USER": server.admin,
        "ADAPTERS_TOKEN": server.token,
    }
    out = CliRunner().invoke(cli, ["rm", "acme/empty", "--all"], env=env, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert "deleted acme/empty (0 versions)" in out.output
    assert http.get("/api/models/acme/empty").status_code == 404
    assert listed() == {}
    assert actions()[0] == ("repo.rm", "acme/empty")
    gone = http.delete("/v1/repos/acme/empty")
    assert gone.status_code == 404 and gone.json()["code"] == "not_found"

    # The name is free: created again (200, not 409), removed by /v1.
    assert create().status_code == 200
    removed = http.delete("/v1/repos/acme/empty")
    assert removed.status_code == 200, removed.text
    assert removed.json() | {"digests": []} == {
        "repo": "acme/empty",
        "versions": [],
        "digests": [],
        "aliases_removed": [],
        "repository_deleted": True,
    }
    assert listed() == {}

    # And by huggingface_hub's delete_repo (twice: the second is RepositoryNotFoundError).
    assert create().status_code == 200
    got = run_client(
        server.url,
        tmp_path / "hf",
        """
        api = hf.HfApi()
        api.delete_repo("acme/empty")
        try:
            api.delete_repo("acme/empty")
            again = None
        except hf_errors.RepositoryNotFoundError as err:
            again = err.response.status_code
        api.delete_repo("acme/empty", missing_ok=True)
        out(again)
        """,
        HF_TOKEN=server.token,
    )
    assert got == 404
    assert listed() == {}
    assert [a for a, _ in actions()] == [
        "repo.rm",
        "repo.create",
        "repo.rm",
        "repo.create",
        "repo.rm",
        "repo.create",
    ]


def test_delete_repo_needs_write(hub: tuple[ServerThread, Registry]) -> None:
    """The Hub's delete_repo is `/v1`'s: write on the namespace; 401 without a token, 403 with
    read, RepoNotFound for a namespace the caller may not read; nothing removed."""
    from tests.hub.test_hub_write import _user

    server, reg = hub
    http = httpx.Client(base_url=server.url, timeout=30, headers=server.auth)
    assert http.post("/api/repos/create", json={"name": "kept", "organization": "acme"}).status_code == 200
    body = {"name": "kept", "organization": "acme", "type": "model"}
    anon = httpx.request("DELETE", f"{server.url}/api/repos/delete", json=body)
    assert anon.status_code == 401 and anon.headers["x-error-code"] == "Unauthenticated"
    reader = _user(reg, "rita", {"acme": "read"})
    read = httpx.request("DELETE", f"{server.url}/api/repos/delete", json=body, headers=reader)
    assert read.status_code == 403 and read.headers["x-error-code"] == "Forbidden"
    stranger = _user(reg, "olga", {"other": "write"})
    hidden = httpx.request("DELETE", f"{server.url}/api/repos/delete", json=body, headers=stranger)
    assert hidden.status_code == 404 and hidden.headers["x-error-code"] == "RepoNotFound"
    assert {r["repo"] for r in http.get("/v1/repos").json()["items"]} == {"acme/kept"}


def test_parentless_commits_apply_to_the_latest_under_contention(
    hub: tuple[ServerThread, Registry], lora_a: Path
) -> None:
    """Commits that name no parentCommit, sent at once by several clients to one repository, all
    succeed (they were 409 once three rebuilds lost the race): distinct versions, each applied to
    the one before it, so the last holds every file. One naming a parent that moved is still 409."""
    server, reg = hub
    http = httpx.Client(base_url=server.url, timeout=120, headers=server.auth)
    _first_version(http, server, lora_a)
    count = 10
    start = threading.Barrier(count)
    answers: dict[int, httpx.Response] = {}

    def push(i: int) -> None:
        client = httpx.Client(base_url=server.url, timeout=120, headers=server.auth)
        lines = [
            {"key": "header", "value": {"summary": f"notes {i}"}},
            _inline(f"notes/{i}.md", b"# %d\n" % i),
        ]
        start.wait()
        answers[i] = _commit(client, REPO, lines)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    failed = {
        i: (a.status_code, a.headers.get("x-error-message"))
        for i, a in answers.items()
        if a.status_code != 200
    }
    assert failed == {}
    numbers = sorted(a.json()["version"] for a in answers.values())
    assert numbers == list(range(2, count + 2))
    assert [v.version for v in versions(reg, REPO)] == list(range(1, count + 2))
    last = files_of(reg, REPO, count + 1)
    assert {f"notes/{i}.md" for i in range(count)} <= set(last)
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(last)
    # Each version holds one more note than the one before it: none was applied to a stale parent.
    sizes = [len(files_of(reg, REPO, n)) for n in range(1, count + 2)]
    assert sizes == list(range(sizes[0], sizes[0] + count + 1))

    # A commit that names a parent which is no longer the latest keeps its 409.
    second = next(a.json()["commitOid"] for a in answers.values() if a.json()["version"] == 2)
    stale = _commit(
        http,
        REPO,
        [
            {"key": "header", "value": {"summary": "stale", "parentCommit": second}},
            _inline("late.md", b"late\n"),
        ],
    )
    assert stale.status_code == 409 and "parentCommit" in stale.headers["x-error-message"]
    assert len(versions(reg, REPO)) == count + 1


def test_a_commit_is_counted_before_its_files_are_decoded_or_checked(
    hub: tuple[ServerThread, Registry],
) -> None:
    """More files than a version holds: refused 413 `push_too_large` before any line is parsed
    (a body of more lines than a commit can have) or any file is decoded and checked (a file with
    an unsafe path among them is not what answers); nothing is stored."""
    server, reg = hub
    http = httpx.Client(base_url=server.url, timeout=120, headers=server.auth)
    header = {"key": "header", "value": {"summary": "many"}}

    # More lines than header + additions + deletions can be: not even the first line is read.
    garbage = b"not json\n" * (2 * MAX_VERSION_FILES + 2)
    answer = http.post(
        f"/api/models/{REPO}/commit/main", content=garbage, headers={"Content-Type": "application/x-ndjson"}
    )
    assert answer.status_code == 413, answer.text[:300]
    assert answer.headers["x-error-message"].startswith("push_too_large: "), answer.headers["x-error-message"]

    # One file more than a version holds, the first with an unsafe path: the count answers.
    files = [_inline("../escape.md", b"x\n")]
    files += [_inline(f"f/{i}.md", b"%d\n" % i) for i in range(MAX_VERSION_FILES)]
    answer = _commit(http, REPO, [header, *files])
    assert answer.status_code == 413, answer.text[:300]
    assert answer.headers["x-error-message"].startswith("push_too_large: "), answer.headers["x-error-message"]
    assert str(MAX_VERSION_FILES) in answer.headers["x-error-message"]
    assert versions(reg, REPO) == []
    assert reg.store.stat("sha256:" + hashlib.sha256(b"1\n").hexdigest()) is None

    # preupload's list has the same bound.
    asked = [{"path": f"f/{i}.md", "size": 2, "sample": ""} for i in range(MAX_VERSION_FILES + 1)]
    answer = http.post(f"/api/models/{REPO}/preupload/main", json={"files": asked})
    assert answer.status_code in (400, 413) and str(MAX_VERSION_FILES) in answer.headers["x-error-message"]
