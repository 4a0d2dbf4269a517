"""What the second adversarial probe (issue 21) did to the upload paths, one test per class, over
real HTTP and raw sockets against a real uvicorn: one writer holding every upload slot, bodies that
trickle, racing proofs of one new blob, LFS batches that asked for millions of signed URLs, a part
URL outliving its token, and headers of 100k empty LoRA modules. Each runs through `/v1` and the
Hub protocol's LFS routes, which share the mechanism."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from registry.access.principal import OPERATOR
from registry.api import create_app
from registry.bounds import ADAPTER_HEADER_BYTES, ADAPTER_TENSORS_MAX, LFS_BATCH_OBJECTS, LFS_BATCH_PARTS
from registry.config import Settings
from registry.services import accounts
from registry.services.context import Registry
from registry.services.hub_lfs import PartStore
from tests.conftest import ServerThread, db_url_for, make_settings, resource_params

pytestmark = pytest.mark.server

REPO = "acme/tricky"


def _serve(settings: Settings) -> Iterator[tuple[ServerThread, Registry]]:
    reg = Registry.from_settings(settings, migrate=True)
    with ServerThread(create_app(settings, reg)) as srv:
        yield srv, reg
    reg.close()


def _settings(request: pytest.FixtureRequest, tmp_path: Path, db: str = "sqlite", **update: Any) -> Settings:
    settings = make_settings(tmp_path, db_url_for(db, tmp_path, request), "file", request)
    return settings.model_copy(update={"max_push_bytes": 1024**2, **update})


@pytest.fixture
def slots(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ServerThread, Registry]]:
    """Four upload slots, two a user, a queue wait of 1 s; bodies may idle for 30 s."""
    yield from _serve(
        _settings(
            request,
            tmp_path,
            upload_concurrency=4,
            upload_slots_per_user=2,
            upload_queue_timeout_s=1.0,
            upload_idle_timeout_s=30.0,
        )
    )


def _writer(reg: Registry, name: str, namespace: str) -> tuple[int, str]:
    """A user with write on `namespace`: their id and a token."""
    user = accounts.add_user(reg, name, principal=OPERATOR)
    accounts.grant(reg, name, namespace, "write", principal=OPERATOR)
    secret, _ = accounts.create_token(reg, name, principal=OPERATOR)
    return user.id, secret


def _client(srv: ServerThread, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=srv.url, timeout=30, headers=headers)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _holding_body(srv: ServerThread, target: str, length: int, token: str | None = None) -> socket.socket:
    """A PUT whose body sends one byte of `length` and then nothing: it holds an upload slot."""
    sock = socket.create_connection(("127.0.0.1", srv.port))
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    sock.sendall(
        f"PUT {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: {length}\r\n\r\nx".encode()
    )
    return sock


def _wait_reading(srv: ServerThread, user_id: int, count: int) -> None:
    slots = srv.app.state.upload_slots  # type: ignore[attr-defined]
    deadline = time.monotonic() + 20
    while slots.reading(user_id) < count:
        assert time.monotonic() < deadline, f"{count} bodies of user {user_id} were never read"
        time.sleep(0.02)


def _lfs_href(http: httpx.Client, repo: str, data: bytes, transfers: tuple[str, ...] = ("basic",)) -> Any:
    answer = http.post(
        f"/{repo}.git/info/lfs/objects/batch",
        json={
            "operation": "upload",
            "transfers": list(transfers),
            "objects": [{"oid": hashlib.sha256(data).hexdigest(), "size": len(data)}],
        },
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["objects"][0]["actions"]["upload"]


# ---------------------------------------------------------------- slots
def test_one_writer_cannot_hold_every_upload_slot(slots: tuple[ServerThread, Registry]) -> None:
    """Alice's two trickling bodies hold her share: her next upload (a /v1 PUT or a Hub LFS PUT)
    waits its queue time and is answered 503 uploads_busy with Retry-After, nothing stored; Bob,
    on the same server meanwhile, uploads through both routes at once."""
    srv, reg = slots
    alice_id, alice = _writer(reg, "alice", "acme")
    _, bob = _writer(reg, "bob", "bobs")
    held = [
        _holding_body(srv, f"/v1/blobs/{_digest(os.urandom(100))}", 100, alice),
        _holding_body(srv, f"/v1/blobs/{_digest(os.urandom(100))}", 100, alice),
    ]
    try:
        _wait_reading(srv, alice_id, 2)
        data = os.urandom(100)
        busy = _client(srv, alice).put(f"/v1/blobs/{_digest(data)}", content=data)
        assert busy.status_code == 503, busy.text
        assert busy.json()["code"] == "uploads_busy" and busy.headers["retry-after"] == "1"
        upload = _lfs_href(_client(srv, alice), REPO, data)
        hub_busy = _client(srv).put(upload["href"].removeprefix(srv.url), content=data)
        assert hub_busy.status_code == 503 and hub_busy.headers["x-error-code"] == "UploadsBusy"
        assert hub_busy.headers["retry-after"] == "1"
        assert reg.store.stat(_digest(data)) is None

        # Bob is not queued behind Alice: both of his routes are served while hers are held.
        mine = os.urandom(100)
        assert _client(srv, bob).put(f"/v1/blobs/{_digest(mine)}", content=mine).status_code == 201
        theirs = os.urandom(100)
        upload = _lfs_href(_client(srv, bob), "bobs/x", theirs)
        assert _client(srv).put(upload["href"].removeprefix(srv.url), content=theirs).status_code == 200
        assert reg.store.stat(_digest(mine)) is not None and reg.store.stat(_digest(theirs)) is not None
        assert srv.app.state.upload_slots.reading(alice_id) == 2  # type: ignore[attr-defined]
    finally:
        for sock in held:
            sock.close()


@pytest.fixture
def slow_bodies(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ServerThread, Registry]]:
    """A body may idle 1 s and must arrive at 1000 bytes/s: 1000 bytes within 2 s."""
    yield from _serve(_settings(request, tmp_path, upload_idle_timeout_s=1.0, upload_min_bytes_per_s=1000))


def _answer_of(sock: socket.socket, drip_every_s: float) -> bytes:
    """Send one byte at a time, never idle for long, until the server answers (or 30 s pass)."""
    sock.settimeout(drip_every_s)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            got = sock.recv(65536)
        except TimeoutError:
            sock.sendall(b"x")
            continue
        sock.settimeout(10)
        while b"\r\n\r\n" not in got or len(got.partition(b"\r\n\r\n")[2]) < _length(got):
            got += sock.recv(65536)
        return got
    raise AssertionError("a body that trickled was never answered")


def _length(response: bytes) -> int:
    for line in response.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            return int(value)
    return 0


@pytest.mark.slow
@pytest.mark.parametrize("route", ["v1", "hub"])
def test_a_body_that_trickles_is_cut_at_its_deadline(
    slow_bodies: tuple[ServerThread, Registry], route: str
) -> None:
    """One byte every 0.25 s never trips the 1 s idle timeout, but 1000 bytes may take 2 s: the
    upload is refused 408 upload_timeout, saying it was too slow, and nothing is stored."""
    srv, reg = slow_bodies
    _, alice = _writer(reg, "alice", "acme")
    data = os.urandom(1000)
    if route == "v1":
        sock = _holding_body(srv, f"/v1/blobs/{_digest(data)}", len(data), alice)
    else:
        href = _lfs_href(_client(srv, alice), REPO, data)["href"]
        sock = _holding_body(srv, href.removeprefix(srv.url), len(data))
    with sock:
        head = _answer_of(sock, 0.25).decode("latin-1")
    assert head.startswith("HTTP/1.1 408"), head
    assert "too slow" in head and "upload_timeout" in head
    assert reg.store.stat(_digest(data)) is None


# ---------------------------------------------------------------- proofs
@pytest.mark.parametrize("db", resource_params("sqlite", "postgresql"))
def test_one_user_uploading_one_new_blob_twice_at_once_both_succeed(
    request: pytest.FixtureRequest, tmp_path: Path, db: str
) -> None:
    """Sixteen PUTs of one new blob by one user at once (two pushes sharing a README) all succeed
    and record one proof; the probe saw 13 of 80 end in 409 on the proof's primary key."""
    for srv, reg in _serve(_settings(request, tmp_path, db)):
        alice_id, alice = _writer(reg, "alice", "acme")
        for round_ in range(3):
            data = f"# shared README {round_}\n".encode() * 50
            assert _racing_puts(srv, alice, data) == [201] * 16
            assert _proofs(reg, _digest(data)) == [alice_id]


def _racing_puts(srv: ServerThread, token: str, data: bytes) -> list[int]:
    def put(_: int) -> int:
        return _client(srv, token).put(f"/v1/blobs/{_digest(data)}", content=data).status_code

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(put, range(16)))


def _proofs(reg: Registry, digest: str) -> list[int]:
    from sqlalchemy import select

    from registry.db import models as m
    from registry.db.engine import unit_of_work

    with unit_of_work(reg.sessions) as session:
        return list(session.scalars(select(m.BlobUpload.user_id).where(m.BlobUpload.digest == digest)))


# ---------------------------------------------------------------- LFS batch
@pytest.fixture
def small_parts(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ServerThread, Registry]]:
    """Parts of 4 KiB: an object of 64 KiB would take 16."""
    yield from _serve(_settings(request, tmp_path, hub_multipart_chunk_bytes=4096))


def test_an_lfs_batch_answer_is_bounded_whatever_it_asks(small_parts: tuple[ServerThread, Registry]) -> None:
    """More objects than a batch may hold are refused before any is looked up; the most a batch
    may hold, every one needing parts, gets an answer of at most LFS_BATCH_PARTS part URLs (larger
    parts instead), one signature per upload, and the parts it names still make the blob."""
    srv, reg = small_parts
    _, alice = _writer(reg, "alice", "acme")
    http = _client(srv, alice)
    url = f"/{REPO}.git/info/lfs/objects/batch"

    def objects(n: int, size: int) -> list[dict[str, Any]]:
        return [{"oid": hashlib.sha256(str(i).encode()).hexdigest(), "size": size} for i in range(n)]

    too_many = http.post(
        url,
        json={
            "operation": "upload",
            "transfers": ["multipart"],
            "objects": objects(LFS_BATCH_OBJECTS + 1, 1),
        },
    )
    assert too_many.status_code == 400 and too_many.headers["x-error-code"] == "BadRequest"
    assert str(LFS_BATCH_OBJECTS) in too_many.headers["x-error-message"]

    data = os.urandom(64 * 1024)
    asked = objects(LFS_BATCH_OBJECTS, len(data))
    asked[0] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data)}
    answer = http.post(
        url, json={"operation": "upload", "transfers": ["multipart", "basic"], "objects": asked}
    )
    assert answer.status_code == 200
    assert len(answer.content) < 2 * 1024**2
    planned = answer.json()["objects"]
    headers = [o["actions"]["upload"]["header"] for o in planned]
    assert sum(len(h) - 1 for h in headers) <= LFS_BATCH_PARTS
    for h in headers:
        chunk = int(h["chunk_size"])
        assert chunk >= 4096 and chunk * (len(h) - 1) >= len(data)
        assert len({parse_qs(urlsplit(u).query)["sig"][0] for k, u in h.items() if k != "chunk_size"}) == 1

    # The first object goes up in its (larger) parts and is completed.
    upload, anon = planned[0]["actions"]["upload"], _client(srv)
    chunk = int(upload["header"].pop("chunk_size"))
    etags = []
    for number, href in sorted(upload["header"].items(), key=lambda kv: int(kv[0])):
        n = int(number)
        part = anon.put(href.removeprefix(srv.url), content=data[(n - 1) * chunk : n * chunk])
        assert part.status_code == 200, part.text
        etags.append({"partNumber": n, "etag": part.headers["etag"]})
    done = anon.post(upload["href"].removeprefix(srv.url), json={"oid": asked[0]["oid"], "parts": etags})
    assert done.status_code == 200, done.text
    assert reg.store.stat(_digest(data)) is not None


def test_a_revoked_tokens_multipart_upload_stops_at_its_next_part(
    small_parts: tuple[ServerThread, Registry],
) -> None:
    srv, reg = small_parts
    accounts.add_user(reg, "alice", principal=OPERATOR)
    accounts.grant(reg, "alice", "acme", "write", principal=OPERATOR)
    secret, info = accounts.create_token(reg, "alice", principal=OPERATOR)
    data = os.urandom(3 * 4096)
    upload = _lfs_href(_client(srv, secret), REPO, data, ("multipart",))
    hrefs = [upload["header"][str(n)].removeprefix(srv.url) for n in (1, 2, 3)]
    anon = _client(srv)
    assert anon.put(hrefs[0], content=data[:4096]).status_code == 200
    accounts.revoke_token(reg, info.id, principal=OPERATOR)
    refused = anon.put(hrefs[1], content=data[4096:8192])
    assert refused.status_code == 401 and refused.headers["x-error-code"] == "Unauthenticated"
    staging = PartStore.of(reg.store).staging
    [upload_id] = staging.uploads()
    assert staging.part_sizes(upload_id) == {1: 4096}


# ---------------------------------------------------------------- headers
LORA_CONFIG = {
    "peft_type": "LORA",
    "task_type": "CAUSAL_LM",
    "r": 8,
    "lora_alpha": 16,
    "target_modules": ["q_proj"],
    "base_model_name_or_path": "tiny",
}


def _empty_lora(modules: int, with_data: bool = False) -> bytes:
    """A safetensors file of `modules` LoRA modules whose factors hold no element ([8, 0], [0, 8])."""
    header: dict[str, Any] = {}
    for i in range(modules):
        prefix = f"base_model.model.layers.{i}.q_proj"
        header[f"{prefix}.lora_A.weight"] = {"dtype": "F32", "shape": [8, 0], "data_offsets": [0, 0]}
        header[f"{prefix}.lora_B.weight"] = {"dtype": "F32", "shape": [0, 8], "data_offsets": [0, 0]}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def _lora(modules: int) -> bytes:
    """A safetensors file of `modules` rank-8 q_proj LoRA modules of width 4 (zeros)."""
    header: dict[str, Any] = {}
    offset = 0
    for i in range(modules):
        prefix = f"base_model.model.layers.{i}.q_proj"
        for kind, shape in (("lora_A", [8, 4]), ("lora_B", [4, 8])):
            header[f"{prefix}.{kind}.weight"] = {
                "dtype": "F32",
                "shape": shape,
                "data_offsets": [offset, offset + 128],
            }
            offset += 128
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + bytes(offset)


def _push(http: httpx.Client, repo: str, files: dict[str, bytes]) -> httpx.Response:
    listed = []
    for path, data in files.items():
        assert http.put(f"/v1/blobs/{_digest(data)}", content=data).status_code == 201
        listed.append({"path": path, "size": len(data), "sha256": _digest(data)})
    return http.post(f"/v1/repos/{repo}/versions", json={"files": listed})


def _hub_commit(http: httpx.Client, repo: str, files: dict[str, bytes]) -> httpx.Response:
    lines = [{"key": "header", "value": {"summary": "probe"}}] + [
        {"key": "file", "value": {"path": p, "content": base64.b64encode(d).decode(), "encoding": "base64"}}
        for p, d in files.items()
    ]
    body = "\n".join(json.dumps(line) for line in lines)
    return http.post(
        f"/api/models/{repo}/commit/main", content=body, headers={"content-type": "application/x-ndjson"}
    )


@pytest.fixture
def headers_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ServerThread, Registry]]:
    yield from _serve(_settings(request, tmp_path, max_push_bytes=64 * 1024**2))


def test_adapter_headers_hold_bounded_non_empty_modules(
    headers_server: tuple[ServerThread, Registry],
) -> None:
    """A LoRA module with an empty factor is refused (weights_mismatch), as is a header of more
    tensors than an adapter may hold (invalid_safetensors), through /v1 and a Hub commit; nothing
    is stored either way."""
    srv, reg = headers_server
    _, alice = _writer(reg, "alice", "acme")
    http = _client(srv, alice)
    config = json.dumps(LORA_CONFIG).encode()

    empty = {"adapter_config.json": config, "adapter_model.safetensors": _empty_lora(2)}
    refused = _push(http, REPO, empty)
    assert refused.status_code == 422 and refused.json()["code"] == "weights_mismatch", refused.text
    assert "empty factor" in refused.json()["detail"]
    hub = _hub_commit(http, REPO, empty)
    assert hub.status_code == 422 and "empty factor" in hub.headers["x-error-message"]

    wide = {
        "adapter_config.json": config,
        "adapter_model.safetensors": _empty_lora(ADAPTER_TENSORS_MAX // 2 + 1),
    }
    refused = _push(http, REPO, wide)
    assert refused.status_code == 422 and refused.json()["code"] == "invalid_safetensors", refused.text
    assert f"at most {ADAPTER_TENSORS_MAX}" in refused.json()["detail"]

    # A model.sig larger than any signature is refused from its size, before it is read.
    from registry.formats.signing import SIGNATURE_MAX_BYTES

    sig = {
        "adapter_config.json": config,
        "adapter_model.safetensors": _lora(1),
        "model.sig": b" " * (SIGNATURE_MAX_BYTES + 1),
    }
    refused = _push(http, REPO, sig)
    assert refused.status_code == 422 and refused.json()["code"] == "invalid_signature", refused.text
    assert "larger than" in refused.json()["detail"]

    # A header longer than any adapter needs is refused from its length, before it is parsed.
    padded = b"{}" + b" " * (ADAPTER_HEADER_BYTES - 1)
    long = {
        "adapter_config.json": config,
        "adapter_model.safetensors": struct.pack("<Q", len(padded)) + padded,
    }
    refused = _push(http, REPO, long)
    assert (
        refused.status_code == 422
        and f"exceeds the cap of {ADAPTER_HEADER_BYTES}" in refused.json()["detail"]
    )
    assert http.get("/v1/versions").json()["items"] == []


# ---------------------------------------------------------------- bodies off the event loop
def test_every_v1_route_parses_its_json_body_off_the_event_loop(
    headers_server: tuple[ServerThread, Registry],
) -> None:
    """FastAPI parses a JSON body on the event loop before any dependency runs, so anyone could
    hold every request with one large body (60 MB of zeros: 1.7 s). Every /v1 route is an ApiRoute,
    whose requests refuse a body larger than any route needs before parsing it and parse large ones
    on a thread: a push of 800 files commits as before."""
    from fastapi.routing import APIRoute

    from registry.api.bodies import INLINE_PARSE_BYTES, ApiRoute

    srv, reg = headers_server
    from registry.bounds import JSON_BODY_BYTES, JSON_BODY_VALUES

    routes = [r for r in _routes(srv.app.routes) if isinstance(r, APIRoute) and r.path.startswith("/v1")]  # type: ignore[attr-defined]
    assert routes and all(isinstance(r, ApiRoute) for r in routes), [
        r.path for r in routes if not isinstance(r, ApiRoute)
    ]

    _, alice = _writer(reg, "alice", "acme")
    http = _client(srv, alice)
    files = {"adapter_config.json": json.dumps(LORA_CONFIG).encode(), "adapter_model.safetensors": _lora(2)}
    files |= {f"docs/{'page-' * 20}{i}.md": f"# page {i}\n".encode() for i in range(800)}
    for data in files.values():
        assert http.put(f"/v1/blobs/{_digest(data)}", content=data).status_code == 201
    listed = [{"path": p, "size": len(d), "sha256": _digest(d)} for p, d in files.items()]
    body = json.dumps({"files": listed}).encode()
    assert len(body) > INLINE_PARSE_BYTES
    pushed = http.post(
        f"/v1/repos/{REPO}/versions", content=body, headers={"content-type": "application/json"}
    )
    assert pushed.status_code == 201, pushed.text
    assert len(pushed.json()["info"]["files"]) == len(files)

    # Larger than any route needs, in bytes or in values: refused before it is parsed.
    anon = _client(srv)
    for body in (
        b'{"files":[],"message":"' + b"x" * JSON_BODY_BYTES + b'"}',
        b'{"files":[],"lineage":[' + b"0," * JSON_BODY_VALUES + b"0]}",
    ):
        refused = anon.post(
            f"/v1/repos/{REPO}/versions", content=body, headers={"content-type": "application/json"}
        )
        assert refused.status_code == 413 and refused.json()["code"] == "payload_too_large", refused.text
    # Within both, parsed (on a thread) and answered on its content.
    zeros = b'{"files":[],"lineage":[' + b"0," * (JSON_BODY_VALUES - 10) + b"0]}"
    refused = anon.post(
        f"/v1/repos/{REPO}/versions", content=zeros, headers={"content-type": "application/json"}
    )
    assert refused.status_code == 422 and refused.json()["code"] == "validation_error", refused.text


def _routes(routes: list[Any]) -> list[Any]:
    """Every route, those of included routers too (FastAPI includes routers as they are)."""
    out = []
    for route in routes:
        included = getattr(route, "original_router", None)
        out += _routes(included.routes) if included is not None else [route]
    return out


def test_hub_bodies_are_bounded_and_read_after_the_caller_is_known(
    headers_server: tuple[ServerThread, Registry],
) -> None:
    """The Hub's JSON routes take the /v1 bounds (bytes before reading, values before parsing), and
    paths-info reads its body only once the caller may read the repository: a body nobody may ask
    about is never parsed (a 32 MB one took 14.7 s before its 400, for anyone)."""
    from registry.bounds import JSON_BODY_BYTES, JSON_BODY_VALUES

    srv, reg = headers_server
    anon = _client(srv)
    junk = b"{" + b"x" * 1000
    hidden = anon.post(
        "/api/models/acme/nothing-here/paths-info/main",
        content=junk,
        headers={"content-type": "application/json"},
    )
    assert hidden.status_code == 404 and hidden.headers["x-error-code"] == "RepoNotFound", hidden.text
    big = anon.post(
        "/api/models/acme/nothing-here/paths-info/main",
        content=b"[" + b"0," * (JSON_BODY_BYTES // 2) + b"0]",
        headers={"content-type": "application/json"},
    )
    assert big.status_code == 413, big.text
    _, alice = _writer(reg, "alice", "acme")
    many = _client(srv, alice).post(
        "/api/repos/create",
        content=b'{"name":"x","organization":"acme","pad":[' + b"0," * JSON_BODY_VALUES + b"0]}",
        headers={"content-type": "application/json"},
    )
    assert many.status_code == 413 and many.headers["x-error-code"] == "PayloadTooLarge", many.text


def test_a_listing_with_files_ends_its_page_at_a_bounded_number_of_files(
    headers_server: tuple[ServerThread, Registry],
) -> None:
    """list_models with its siblings: a page stops before it would carry more than LIST_PAGE_FILES
    files (a page of 1,000 repositories of 10,000 files each was 10M entries), and its Link header
    names the rest, which holds the repositories left out."""
    from registry.services.hub_discovery import LIST_PAGE_FILES

    srv, reg = headers_server
    _, alice = _writer(reg, "alice", "acme")
    http = _client(srv, alice)
    files = {"adapter_config.json": json.dumps(LORA_CONFIG).encode(), "adapter_model.safetensors": _lora(1)}
    page = b"# a page\n"
    for data in (*files.values(), page):
        assert http.put(f"/v1/blobs/{_digest(data)}", content=data).status_code == 201
    per_repo = LIST_PAGE_FILES // 2
    listed = [{"path": p, "size": len(d), "sha256": _digest(d)} for p, d in files.items()]
    listed += [
        {"path": f"docs/{i}.md", "size": len(page), "sha256": _digest(page)} for i in range(per_repo - 2)
    ]
    for name in ("a", "b", "c"):
        assert http.post(f"/v1/repos/acme/{name}/versions", json={"files": listed}).status_code == 201
    first = http.get("/api/models", params={"author": "acme", "full": "true"})
    assert first.status_code == 200, first.text
    assert len(first.json()) == 2
    assert sum(len(m["siblings"]) for m in first.json()) <= LIST_PAGE_FILES
    rest = httpx.get(first.links["next"]["url"], headers=http.headers)
    assert len(rest.json()) == 1 and len(rest.json()[0]["siblings"]) == per_repo
    assert {m["id"] for m in first.json()} | {m["id"] for m in rest.json()} == {"acme/a", "acme/b", "acme/c"}
