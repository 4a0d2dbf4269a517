"""Crash points and a database restart under load, with real processes on PostgreSQL: a push whose
client or server is killed (SIGKILL) after the blobs are uploaded and before (or during) the
commit leaves nothing half-visible and a retry succeeds; requests made while the database is away
get 503 `server_unavailable`, never a 500, and the server recovers without a restart."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from registry.access.principal import OPERATOR
from registry.client.http import HttpClient
from registry.client.transfer import pull, push_folder
from registry.config import Settings
from registry.services import accounts
from registry.services.context import Registry
from tests.conftest import PG_ADMIN_URL, free_port, make_settings

pytestmark = [pytest.mark.server, pytest.mark.postgres]
ROOT = Path(__file__).resolve().parents[2]


class ServeProcess:
    """`adapters serve --no-worker` in its own process, as in production (SIGKILL-able)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServeProcess:
        env = {
            **os.environ,
            "ADAPTERS_HOME": str(self.settings.home),
            "ADAPTERS_DATABASE_URL": self.settings.effective_database_url,
            "ADAPTERS_BLOB_URL": self.settings.effective_blob_url,
        }
        env.pop("ADAPTERS_URL", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--no-worker", "--port", str(self.port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and self.proc.poll() is None, "server did not start"
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


@pytest.fixture
def served(tmp_path: Path, pg_url: str, request: pytest.FixtureRequest) -> Iterator[tuple[ServeProcess, str]]:
    settings = make_settings(tmp_path, pg_url, "file", request)
    reg = Registry.from_settings(settings, migrate=True)
    accounts.add_user(reg, "tester", admin=True, principal=OPERATOR)
    token, _ = accounts.create_token(reg, "tester", principal=OPERATOR)
    reg.close()
    server = ServeProcess(settings).start()
    yield server, token
    server.stop()


def visible_versions(url: str, token: str) -> list[str]:
    resp = httpx.get(
        f"{url}/v1/versions", params={"limit": 500}, headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status_code == 200, resp.text
    return sorted(v["ref"] for v in resp.json()["items"])


def uploading_client(url: str, token: str, folder: Path, marker: Path) -> subprocess.Popen[bytes]:
    """A push that uploads every blob, says so, then waits to be killed before it commits."""
    code = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from registry.client.http import HttpClient
        from registry.client.transfer import upload_missing
        from registry.formats.folder import hash_folder, list_folder
        client = HttpClient({url!r}, "tester", Path({str(marker.parent / "cache")!r}), token={token!r})
        files = list_folder(Path({str(folder)!r}))
        upload_missing(client, hash_folder(files), dict(files), None)
        Path({str(marker)!r}).write_text("uploaded")
        time.sleep(600)
        """
    )
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)


def wait_for(path: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_client_killed_between_upload_and_commit(
    served: tuple[ServeProcess, str], lora_a: Path, tmp_path: Path
) -> None:
    server, token = served
    marker = tmp_path / "uploaded"
    proc = uploading_client(server.url, token, lora_a, marker)
    wait_for(marker)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert visible_versions(server.url, token) == []  # blobs uploaded, nothing committed, nothing visible
    client = HttpClient(server.url, "tester", tmp_path / "cache2", token=token)
    assert push_folder(client, lora_a, "acme/retried").info.ref == "acme/retried:1"
    _, out = pull(client, "acme/retried", tmp_path / "out")
    assert (out / "adapter_model.safetensors").read_bytes() == (
        lora_a / "adapter_model.safetensors"
    ).read_bytes()
    client.close()


def test_server_killed_between_upload_and_commit_and_during_commits(
    served: tuple[ServeProcess, str], lora_a: Path, tmp_path: Path
) -> None:
    server, token = served
    client = HttpClient(server.url, "tester", tmp_path / "cache", token=token)
    # 1. Blobs uploaded, then the server dies before any commit.
    from registry.client.transfer import upload_missing
    from registry.formats.folder import hash_folder, list_folder

    files = list_folder(lora_a)
    upload_missing(client, hash_folder(files), dict(files), None)
    server.kill()
    server.start()
    assert visible_versions(server.url, token) == []
    # 2. The server dies while commits are in flight (many of them, from threads).
    stop = threading.Event()
    outcomes: list[str] = []

    def committer(i: int) -> None:
        c = HttpClient(server.url, "tester", tmp_path / f"c{i}", token=token)
        n = 0
        while not stop.is_set():
            n += 1
            folder = tmp_path / f"a{i}-{n}"
            if not folder.exists():
                import shutil

                shutil.copytree(lora_a, folder)
                (folder / "README.md").write_text(f"variant {i} {n}\n")
            try:
                push_folder(c, folder, f"acme/busy{i}")
                outcomes.append("ok")
            except Exception as err:  # the server dies under it: any transport or 5xx failure
                outcomes.append(type(err).__name__)
        c.close()

    threads = [threading.Thread(target=committer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(3)
    server.kill()
    stop.set()
    for t in threads:
        t.join(60)
    server.start()
    # Every visible version is whole: it resolves, every blob is present and hashes to its name,
    # and numbers are gap-free within each repository.
    refs = visible_versions(server.url, token)
    headers = {"Authorization": f"Bearer {token}"}
    by_repo: dict[str, list[int]] = {}
    for ref in refs:
        repo, number = ref.rsplit(":", 1)
        by_repo.setdefault(repo, []).append(int(number))
        info = httpx.get(f"{server.url}/v1/resolve", params={"ref": ref}, headers=headers).json()
        for f in info["files"]:
            blob = httpx.get(f"{server.url}/v1/blobs/{f['sha256']}", headers=headers)
            assert (
                blob.status_code == 200
                and "sha256:" + hashlib.sha256(blob.content).hexdigest() == f["sha256"]
            )
    for numbers in by_repo.values():
        assert sorted(numbers) == list(range(1, len(numbers) + 1))
    assert "ok" in outcomes
    # A retry after the restart succeeds.
    assert push_folder(client, lora_a, "acme/after").info.ref == "acme/after:1"
    client.close()


def test_database_restart_under_load_is_503_never_500(
    served: tuple[ServeProcess, str], lora_a: Path, tmp_path: Path, pg_url: str
) -> None:
    server, token = served
    client = HttpClient(server.url, "tester", tmp_path / "cache", token=token)
    push_folder(client, lora_a, "acme/steady")
    statuses: list[int] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as http:
            while not stop.is_set():
                for call in (
                    lambda: http.get("/v1/resolve", params={"ref": "acme/steady"}),
                    lambda: http.get("/v1/versions"),
                    lambda: http.post("/v1/fit", json={"base": "nothing"}),
                ):
                    try:
                        statuses.append(call().status_code)
                    except httpx.TransportError:
                        statuses.append(-1)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    db_name = pg_url.rsplit("/", 1)[1]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        time.sleep(1)
        with admin.connect() as conn:  # the database goes away: no new connections, old ones cut
            conn.execute(text(f'ALTER DATABASE "{db_name}" ALLOW_CONNECTIONS false'))
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"),
                {"d": db_name},
            )
        time.sleep(3)
        during = len(statuses)
        with admin.connect() as conn:  # and comes back
            conn.execute(text(f'ALTER DATABASE "{db_name}" ALLOW_CONNECTIONS true'))
        time.sleep(3)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{db_name}" ALLOW_CONNECTIONS true'))
        admin.dispose()
    assert 500 not in statuses and -1 not in statuses, sorted(set(statuses))
    assert 503 in statuses[:during]  # the outage was seen, as 503
    assert statuses[-1] in (200, 404)  # and the server recovered by itself (fit of an unknown base: 404)
    info = client.resolve("acme/steady")
    assert info.ref == "acme/steady:1"
    client.close()
