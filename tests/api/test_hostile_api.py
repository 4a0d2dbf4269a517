"""What an adversarial probe of `adapters serve` broke (issue 9), one test per class, over real HTTP
against a real uvicorn on PostgreSQL (where the probe ran) and SQLite, with real PEFT adapters."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from registry.api import create_app
from registry.client.http import HttpClient
from registry.client.transfer import pull, push_folder
from registry.config import Settings
from registry.services.context import Registry
from registry.services.hub_lfs import PartStore
from storage.staging import LocalStaging
from tests.conftest import PG_ADMIN_URL, ServerThread, make_settings, resource_params

pytestmark = pytest.mark.server

PROBLEM = "application/problem+json"


@pytest.fixture(params=resource_params("sqlite", "postgresql"))
def hostile_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    from tests.conftest import db_url_for

    settings = make_settings(tmp_path, db_url_for(request.param, tmp_path, request), "file", request)
    return settings.model_copy(update={"max_push_bytes": 1024**2, "upload_idle_timeout_s": 2.0})


@pytest.fixture
def srv(hostile_settings: Settings) -> Iterator[ServerThread]:
    reg = Registry.from_settings(hostile_settings, migrate=True)
    with ServerThread(create_app(hostile_settings, reg)) as server:
        yield server
    reg.close()


@pytest.fixture
def http(srv: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=srv.url, timeout=30, headers=srv.auth) as client:
        yield client


def code_of(resp: httpx.Response, status: int) -> str:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    assert resp.headers["x-request-id"] == resp.json()["request_id"]
    return str(resp.json()["code"])


def raw_push(http: httpx.Client, folder: Path, repo: str, **extra: object) -> httpx.Response:
    """Upload a folder's files and commit them with raw HTTP, as a hostile client would: no
    client-side check runs."""
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        assert http.put(f"/v1/blobs/{digest}", content=data).status_code == 201
        files.append({"path": str(path.relative_to(folder)), "size": len(data), "sha256": digest})
    body = json.dumps({"files": files, **extra}).encode()
    return http.post(f"/v1/repos/{repo}/versions", content=body, headers={"content-type": "application/json"})


def assert_nothing_stored(http: httpx.Client) -> None:
    listing = http.get("/v1/versions")
    assert listing.status_code == 200 and listing.json()["items"] == []
    assert http.get("/v1/repos").json()["items"] == []


def set_config(folder: Path, raw_json: str) -> None:
    (folder / "adapter_config.json").write_text(raw_json)


# ---------------------------------------------------------------- stored poison
@pytest.mark.parametrize(
    "poison",
    [
        '"note": "\\ud800"',  # a lone surrogate escape: valid JSON grammar, not storable text
        '"note": "a\\u0000b"',  # NUL: PostgreSQL text cannot hold it
        '"note": ' + "[" * 500 + "]" * 500,
        '"note": NaN',
        '"note": ' + "[" * 100_000 + "]" * 100_000,
    ],
    ids=["surrogate", "nul", "depth-500", "nan", "depth-100k"],
)
def test_poisoned_config_is_refused_and_nothing_stored(http: httpx.Client, lora_a: Path, poison: str) -> None:
    doc = (lora_a / "adapter_config.json").read_text().rstrip().rstrip("}")
    set_config(lora_a, doc + ", " + poison + "}")
    assert code_of(raw_push(http, lora_a, "acme/poison"), 422) == "invalid_adapter"
    assert_nothing_stored(http)


@pytest.mark.parametrize(
    ("extra", "raw"),
    [
        ({}, '"lineage": {"kind": "merge", "error": {"max": NaN}}'),
        ({}, '"lineage": {"kind": "\\ud800"}'),
        ({}, '"lineage": ' + '{"a": ' * 40 + "1" + "}" * 40),
        ({}, '"evals": [{"metric": "acc", "value": NaN}]'),
        ({}, '"evals": [{"metric": "acc", "value": Infinity}]'),
        ({}, '"evals": [{"metric": "acc", "value": 0.5, "dataset": "a\\u0000"}]'),
        ({}, '"task": "legal\\u0000"'),
        ({}, '"message": "\\udfff"'),
        ({}, '"base": "' + "b" * 300 + '"'),
        ({}, '"aliases": ["prod\\n"]'),
    ],
)
def test_poisoned_push_fields_are_refused(
    http: httpx.Client, lora_a: Path, extra: dict[str, object], raw: str
) -> None:
    good = raw_push(http, lora_a, "acme/ok")
    assert good.status_code == 201
    body = json.loads(good.request.content)
    payload = json.dumps({"files": body["files"]})[:-1] + ", " + raw + "}"
    resp = http.post("/v1/repos/acme/poisoned/versions", content=payload.encode())
    assert resp.status_code in (400, 422), resp.text
    assert code_of(resp, resp.status_code) in ("validation_error", "invalid_reference")
    listing = http.get("/v1/versions").json()["items"]
    assert [v["repo"] for v in listing] == ["acme/ok"]


def test_listing_serves_summaries(http: httpx.Client, lora_a: Path) -> None:
    assert raw_push(http, lora_a, "acme/summary", lineage={"kind": "note"}).status_code == 201
    item = http.get("/v1/versions").json()["items"][0]
    assert item["ref"] == "acme/summary:1" and item["derived"] is True
    assert not {"config", "files", "lineage", "message"} & set(item)
    whole = http.get("/v1/resolve", params={"ref": "acme/summary"}).json()
    assert whole["config"]["peft_type"] == "LORA" and whole["lineage"] == {"kind": "note"}


# ---------------------------------------------------------------- every bad input is a 4xx
def test_out_of_range_and_nul_inputs_are_4xx(http: httpx.Client, lora_a: Path) -> None:
    assert raw_push(http, lora_a, "acme/ok").status_code == 201
    cases = [
        http.get("/v1/resolve", params={"ref": "acme/ok:2147483648"}),
        http.get("/v1/resolve", params={"ref": "acme/ok\n"}),
        http.get("/v1/repos/acme/ok/versions/99999999999"),
        http.get("/v1/versions", params={"cursor": "99999999999999999999"}),
        http.get("/v1/versions", params={"task": "a\x00b"}),
        http.get("/v1/versions", params={"base": "x" * 5000}),
        http.get("/v1/repos", params={"cursor": "1" * 5000}),
        http.get("/v1/bases/lookup", params={"ref": "n\x00"}),
        http.post("/v1/jobs/99999999999/cancel"),
        http.get("/v1/jobs/99999999999"),
        http.put("/v1/repos/acme/ok/aliases/prod", json={"version": 2**66}),
        http.put("/v1/repos/acme/ok/aliases/prod", json={"version": 2**31}),
    ]
    assert code_of(cases[0], 400) == "invalid_reference"
    for resp in cases:
        assert 400 <= resp.status_code < 500, (resp.request.url, resp.text)
        assert resp.headers["content-type"].startswith(PROBLEM)


def test_range_headers(http: httpx.Client) -> None:
    data = os.urandom(1000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert http.put(f"/v1/blobs/{digest}", content=data).status_code == 201
    # RFC 9110: a start at or past the end (however many digits) is unsatisfiable...
    for header in (
        "bytes=" + "1" * 30 + "-",
        "bytes=" + "1" * 30 + "-" + "2" * 40,
        "bytes=2000-",
        "bytes=1000-",
    ):
        resp = http.get(f"/v1/blobs/{digest}", headers={"Range": header})
        assert code_of(resp, 416) == "range_not_satisfiable", header
        assert resp.headers["content-range"] == "bytes */1000"
    # ...an end past it is clamped, whatever its length...
    for header, start in [
        ("bytes=0-" + "9" * 5000, 0),
        ("bytes=990-1500", 990),
        ("bytes=-" + "9" * 5000, 0),
        ("bytes=-2000", 0),
        ("bytes=" + "0" * 40 + "5-" + "9" * 30, 5),
    ]:
        resp = http.get(f"/v1/blobs/{digest}", headers={"Range": header})
        assert resp.status_code == 206, header
        assert resp.content == data[start:] and resp.headers["content-range"] == f"bytes {start}-999/1000"
    # ...and a range the header cannot mean (first byte after the last, another unit, several
    # ranges, bad syntax) is ignored: the whole blob, 200.
    for header in (
        "bytes=5-2",
        "bytes=" + "9" * 30 + "-" + "8" * 30,
        "items=0-1",
        "bytes=0-1,5-6",
        "bytes=x-",
    ):
        resp = http.get(f"/v1/blobs/{digest}", headers={"Range": header})
        assert resp.status_code == 200 and resp.content == data, header
        assert "content-range" not in resp.headers


def base_body(**override: object) -> dict[str, object]:
    body: dict[str, object] = {
        "names": [{"name": "tiny"}],
        "structure_signature": "sha256:" + "0" * 64,
        "modules": [{"name": "q_proj", "kind": "linear", "in_features": 4, "out_features": 4}],
    }
    return body | override


@pytest.mark.parametrize(
    "override",
    [
        {"names": [{"name": "n" * 257}]},
        {"modules": [{"name": "m" * 257, "kind": "linear", "in_features": 4, "out_features": 4}]},
        {"hidden_size": 2**40},
        {"param_count": 2**64},
        {"config": {"a": "\ud800"}},
        {"names": [{"name": "tiny\u202e"}]},
        {"files": [{"path": "../x", "size": 1, "sha256": "sha256:" + "1" * 64}]},
    ],
)
def test_base_registration_bounds(http: httpx.Client, override: dict[str, object]) -> None:
    body = json.dumps(base_body(**override)).encode()  # ASCII escapes: a lone surrogate survives
    resp = http.post("/v1/bases", content=body, headers={"content-type": "application/json"})
    assert 400 <= resp.status_code < 500, resp.text
    assert http.get("/v1/bases").json() == []
    assert http.post("/v1/bases", json=base_body()).status_code == 201


@pytest.mark.parametrize(
    "params",
    [
        {"inputs": [{"ref": "acme/a", "weight": 1e308}], "into": "acme/out"},
        {"inputs": [{"ref": "acme/a\n", "weight": 1}], "into": "acme/out"},
        {"inputs": [{"ref": "acme/a", "weight": 1}], "into": "Acme/Out"},
        {"inputs": [{"ref": "acme/a", "weight": 1}], "into": "acme/out", "aliases": ["latest"]},
        {"inputs": [{"ref": "acme/a", "weight": 1}], "into": "acme/out", "seed": -1},
    ],
)
def test_job_submission_refuses_what_can_never_work(http: httpx.Client, params: dict[str, object]) -> None:
    resp = http.post("/v1/jobs", json={"type": "merge", "params": params})
    assert code_of(resp, 400) == "bad_request"
    assert http.get("/v1/jobs").json() == []


# ---------------------------------------------------------------- 500s, 503s and the connection
def raw_exchange(port: int, request: bytes, responses: int = 1) -> list[bytes]:
    """Send raw bytes on one connection; return each response's status line and headers."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(request)
        data = b""
        heads: list[bytes] = []
        while len(heads) < responses:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            while b"\r\n\r\n" in data:
                head, _, rest = data.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(h.split(b":")[1])
                        for h in head.split(b"\r\n")
                        if h.lower().startswith(b"content-length")
                    ),
                    0,
                )
                if len(rest) < length:
                    break
                heads.append(head)
                data = rest[length:]
        return heads


@pytest.fixture
def pg_srv(tmp_path: Path, pg_url: str, request: pytest.FixtureRequest) -> Iterator[tuple[ServerThread, str]]:
    settings = make_settings(tmp_path, pg_url, "file", request)
    reg = Registry.from_settings(settings, migrate=True)
    with ServerThread(create_app(settings, reg)) as server:
        yield server, pg_url
    reg.close()


def test_internal_error_is_generic_and_keeps_the_connection(
    pg_srv: tuple[ServerThread, str], lora_a: Path
) -> None:
    server, pg_url = pg_srv
    with httpx.Client(base_url=server.url, timeout=30, headers=server.auth) as http:
        assert raw_push(http, lora_a, "acme/ok").status_code == 201
        # A real fault behind the API's back: a table the read needs is gone.
        engine = create_engine(pg_url)
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE qlora_checks"))
        engine.dispose()
        resp = http.get("/v1/resolve", params={"ref": "acme/ok"})
        assert code_of(resp, 500) == "internal_error"
        body = resp.text.lower()
        db_name = pg_url.rsplit("/", 1)[1]
        for secret in ("select", "qlora_checks", "127.0.0.1", "5432", db_name, "psycopg"):
            assert secret not in body, secret
    port = server.port
    auth = f"Authorization: Bearer {server.token}\r\n".encode()
    req = (
        b"GET /v1/resolve?ref=acme/ok HTTP/1.1\r\nHost: x\r\n"
        + auth
        + b"\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    heads = raw_exchange(port, req, responses=2)
    assert heads[0].startswith(b"HTTP/1.1 500") and heads[1].startswith(b"HTTP/1.1 200"), heads


def test_database_gone_is_503_and_recovers(pg_srv: tuple[ServerThread, str], lora_a: Path) -> None:
    server, pg_url = pg_srv
    db_name = pg_url.rsplit("/", 1)[1]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with httpx.Client(base_url=server.url, timeout=30, headers=server.auth) as http:
        assert raw_push(http, lora_a, "acme/ok").status_code == 201
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{db_name}" ALLOW_CONNECTIONS false'))
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"),
                {"d": db_name},
            )
        try:
            for resp in (
                http.get("/v1/resolve", params={"ref": "acme/ok"}),
                http.get("/v1/versions"),
                http.post(
                    "/v1/jobs",
                    json={
                        "type": "merge",
                        "params": {"inputs": [{"ref": "a/b", "weight": 1}], "into": "a/c"},
                    },
                ),
            ):
                assert code_of(resp, 503) == "server_unavailable"
                assert "127.0.0.1" not in resp.text and db_name not in resp.text
            ready = http.get("/readyz")
            assert code_of(ready, 503) == "server_unavailable"
            assert ready.json()["database"] == "unavailable" and ready.json()["blobs"] == "ok"
            assert "/" not in json.dumps({k: v for k, v in ready.json().items() if k not in ("type",)})
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'ALTER DATABASE "{db_name}" ALLOW_CONNECTIONS true'))
            admin.dispose()
        # Recovers by itself: the pool pings and reconnects.
        assert http.get("/v1/resolve", params={"ref": "acme/ok"}).status_code == 200
        assert http.get("/readyz").json()["status"] == "ready"


def test_ambiguous_framing_is_refused(srv: ServerThread) -> None:
    req = (
        b"POST /v1/blobs/missing HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 15\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    heads = raw_exchange(srv.port, req)
    assert heads and heads[0].startswith(b"HTTP/1.1 400"), heads


# ---------------------------------------------------------------- resources
def test_blob_over_the_cap_is_refused_before_the_body(http: httpx.Client, srv: ServerThread) -> None:
    digest = "sha256:" + "ab" * 32
    with socket.create_connection(("127.0.0.1", srv.port), timeout=20) as sock:
        # Only the head is sent: the refusal must come without waiting for 5 MB.
        sock.sendall(
            f"PUT /v1/blobs/{digest} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {srv.token}\r\nContent-Length: {5 * 1024**2}\r\n\r\n".encode()
        )
        head = b""
        while b"push_too_large" not in head and (chunk := sock.recv(65536)):
            head += chunk
    assert head.startswith(b"HTTP/1.1 413") and b"push_too_large" in head, head


@pytest.mark.slow  # waits on purpose
def test_stalled_upload_times_out_and_leaves_nothing(hostile_settings: Settings, srv: ServerThread) -> None:
    digest = "sha256:" + "cd" * 32
    with socket.create_connection(("127.0.0.1", srv.port), timeout=20) as sock:
        sock.sendall(
            f"PUT /v1/blobs/{digest} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {srv.token}\r\nContent-Length: 1000\r\n\r\nabc".encode()
        )
        head = b""
        while b"upload_timeout" not in head and (chunk := sock.recv(65536)):
            head += chunk
    assert head.startswith(b"HTTP/1.1 408") and b"upload_timeout" in head, head
    tmp = hostile_settings.home / "blobs" / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []


def test_stale_partial_uploads_are_removed_at_start(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'r.db'}", "file", request)
    tmp = settings.home / "blobs" / "tmp"
    tmp.mkdir(parents=True)
    (tmp / "upload-dead").write_bytes(b"x" * 1000)
    old = time.time() - 2 * settings.stale_upload_s
    os.utime(tmp / "upload-dead", (old, old))
    (tmp / "upload-live").write_bytes(b"y")  # an upload of another process, still moving
    reg = Registry.from_settings(settings, migrate=True)
    with ServerThread(create_app(settings, reg)):
        assert sorted(p.name for p in tmp.iterdir()) == ["upload-live"]
    reg.close()


def test_stale_hub_upload_parts_are_removed_at_start(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Parts of Hub multipart uploads a killed client or server never completed: gone at start-up,
    not only at another upload's completion; an upload still moving is left alone."""
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'r.db'}", "file", request)
    reg = Registry.from_settings(settings, migrate=True)
    staging = PartStore.of(reg.store).staging
    for upload in ("dead", "live"):
        staging.put_part(upload, 1, io.BytesIO(b"x" * 1000), 1000)
    assert isinstance(staging, LocalStaging)  # the file store: parts in a folder under the blob root
    old = time.time() - 2 * settings.stale_upload_s
    os.utime(staging.root / "dead", (old, old))
    with ServerThread(create_app(settings, reg)):
        assert staging.uploads() == ["live"]
    reg.close()


@pytest.mark.slow  # waits on purpose
def test_slow_uploads_do_not_starve_other_routes(srv: ServerThread, lora_a: Path, tmp_path: Path) -> None:
    client = HttpClient(srv.url, user="alice", cache_dir=tmp_path / "cache", token=srv.token)
    push_folder(client, lora_a, "acme/pulled")
    socks = []
    stop = threading.Event()
    try:
        for i in range(60):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=20)
            digest = "sha256:" + f"{i:064x}"
            s.sendall(
                f"PUT /v1/blobs/{digest} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {srv.token}\r\nContent-Length: 100000\r\n\r\n".encode()
            )
            socks.append(s)

        def trickle() -> None:  # 1 byte/s on each, until the test ends
            while not stop.wait(1.0):
                for s in socks:
                    try:
                        s.sendall(b"x")
                    except OSError:
                        pass

        threading.Thread(target=trickle, daemon=True).start()
        time.sleep(1.5)  # let the server take all 60 in
        with httpx.Client(base_url=srv.url, timeout=15, headers=srv.auth) as http:
            assert http.get("/healthz").json() == {"status": "ok"}
            assert http.get("/v1/versions").status_code == 200
        info, out = pull(client, "acme/pulled", tmp_path / "out")
        assert (out / "adapter_model.safetensors").read_bytes() == (
            lora_a / "adapter_model.safetensors"
        ).read_bytes()
    finally:
        stop.set()
        for s in socks:
            s.close()
        client.close()


def test_concurrent_pushes_sharing_new_blobs(
    pg_srv: tuple[ServerThread, str], lora_a: Path, tmp_path: Path
) -> None:
    server, _ = pg_srv
    (lora_a / "README.md").write_text("# shared model card\n")

    def push(i: int) -> str:
        client = HttpClient(server.url, user="alice", cache_dir=tmp_path / f"cache{i}", token=server.token)
        try:
            return push_folder(client, lora_a, f"acme/shared-{i}").info.ref
        finally:
            client.close()

    with ThreadPoolExecutor(10) as pool:
        refs = sorted(pool.map(push, range(10)))
    assert refs == sorted(f"acme/shared-{i}:1" for i in range(10))
