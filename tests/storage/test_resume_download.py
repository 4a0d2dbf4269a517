"""HttpClient pulls resume a cut download with Range, against the real server (uvicorn on
loopback) behind a TCP proxy that cuts the connection after a set number of response bytes."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.client.http import HttpClient
from registry.errors import DigestMismatch, ServerUnavailable
from registry.services.context import Registry
from tests.conftest import ServerThread, free_port, make_settings

pytestmark = pytest.mark.server

SIZE = 3 * 1024 * 1024 + 17


class CuttingProxy:
    """Forwards loopback TCP to `upstream`; the n-th connection's response is cut after
    `cuts[n]` bytes (no entry: passed whole). Records each connection's request head."""

    def __init__(self, upstream_port: int, cuts: dict[int, int]) -> None:
        self.upstream_port = upstream_port
        self.cuts = cuts
        self.requests: list[bytes] = []
        self.refuse_after: int | None = None
        """Connections after this many are closed at once (the server looks gone)."""
        self.sock = socket.create_server(("127.0.0.1", free_port()))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        n = 0
        while not self._stop:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if self.refuse_after is not None and n >= self.refuse_after:
                client.close()
                continue
            threading.Thread(target=self._serve, args=(client, self.cuts.get(n)), daemon=True).start()
            n += 1

    def _serve(self, client: socket.socket, cut: int | None) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        head = b""

        def pump_up() -> None:
            nonlocal head
            try:
                while data := client.recv(65536):
                    if len(head) < 4096:
                        head += data
                        if b"\r\n\r\n" in head:
                            self.requests.append(head.split(b"\r\n\r\n", 1)[0])
                    upstream.sendall(data)
            except OSError:
                pass

        threading.Thread(target=pump_up, daemon=True).start()
        sent = 0
        try:
            while data := upstream.recv(65536):
                if cut is not None and sent + len(data) >= cut:
                    client.sendall(data[: cut - sent])
                    break
                client.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self) -> None:
        self._stop = True
        self.sock.close()


@pytest.fixture
def blob_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[ServerThread, str, bytes]]:
    from registry.api import create_app

    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'registry.db'}", "file", request)
    reg = Registry.from_settings(settings, migrate=True)
    data = os.urandom(SIZE)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    reg.store.put(io.BytesIO(data), digest, SIZE)
    with ServerThread(create_app(settings, reg)) as srv:
        yield srv, digest, data
    reg.close()


class Progress:
    def __init__(self) -> None:
        self.total = 0

    def start(self, description: str, total_bytes: int) -> None: ...

    def advance(self, n: int) -> None:
        self.total += n

    def finish(self) -> None: ...


def ranges(proxy: CuttingProxy) -> list[str | None]:
    out: list[str | None] = []
    for head in proxy.requests:
        found = [
            line.split(b":", 1)[1].strip().decode()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"range:")
        ]
        out.append(found[0] if found else None)
    return out


def test_a_cut_download_resumes_with_range(
    blob_server: tuple[ServerThread, str, bytes], tmp_path: Path
) -> None:
    srv, digest, data = blob_server
    proxy = CuttingProxy(srv.port, cuts={0: 1024 * 1024, 1: 512 * 1024})
    client = HttpClient(proxy.url, "tester", tmp_path / "cache", token=srv.token)
    progress = Progress()
    try:
        client.fetch_blob(digest, SIZE, progress)
    finally:
        client.close()
        proxy.close()
    assert b"".join(client.cache.open(digest)) == data
    seen = ranges(proxy)
    assert len(seen) == 3 and seen[0] is None
    first, second = (int(r.removeprefix("bytes=").rstrip("-")) for r in seen[1:] if r)
    assert 0 < first < second < SIZE  # each try continued where the last one stopped
    assert progress.total == SIZE  # every byte counted once
    assert not list((tmp_path / "cache" / "tmp").glob("*.partial"))


def test_a_failed_pull_keeps_its_bytes_for_the_next(
    blob_server: tuple[ServerThread, str, bytes], tmp_path: Path
) -> None:
    srv, digest, data = blob_server
    proxy = CuttingProxy(srv.port, cuts={0: 1024 * 1024})
    client = HttpClient(proxy.url, "tester", tmp_path / "cache", token=srv.token)
    proxy.refuse_after = 1  # the retry after the cut finds the server gone
    try:
        with pytest.raises(ServerUnavailable, match="kept for the next pull"):
            client.fetch_blob(digest, SIZE, None)
        (partial,) = (tmp_path / "cache" / "tmp").glob("*.partial")
        kept = partial.stat().st_size
        assert 0 < kept < SIZE and partial.read_bytes() == data[:kept]
        proxy.refuse_after = None
        client.fetch_blob(digest, SIZE, None)
    finally:
        client.close()
        proxy.close()
    assert ranges(proxy)[-1] == f"bytes={kept}-"
    assert b"".join(client.cache.open(digest)) == data


def test_a_partial_file_that_is_not_a_prefix_is_discarded(
    blob_server: tuple[ServerThread, str, bytes], tmp_path: Path
) -> None:
    srv, digest, data = blob_server
    partial = tmp_path / "cache" / "tmp" / f"pull-{digest.removeprefix('sha256:')}.partial"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\0" * 1000)  # not what the blob starts with
    client = HttpClient(srv.url, "tester", tmp_path / "cache", token=srv.token)
    try:
        with pytest.raises(DigestMismatch):
            client.fetch_blob(digest, SIZE, None)
        assert not partial.exists() and client.cache.stat(digest) is None
        client.fetch_blob(digest, SIZE, None)  # the next pull starts over and succeeds
    finally:
        client.close()
    assert b"".join(client.cache.open(digest)) == data
