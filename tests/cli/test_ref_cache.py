"""The client's cache of immutable references (registry.client.ref_cache): a number or a digest
resolved once starts later pulls without a query, embedded and over HTTP; aliases and the latest
are asked every time; a deleted version is pulled from the cache only while this machine still
holds its blobs, and never after this client deleted it itself."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from registry.access.principal import OPERATOR, Principal
from registry.api import create_app
from registry.client.http import HttpClient
from registry.client.local import LocalClient
from registry.client.reads import ClientReads, open_reads, pull_ref
from registry.client.transfer import push_folder
from registry.config import Settings
from registry.errors import NotFound, SchemaNewer
from registry.services import accounts
from registry.services.context import Registry
from tests.conftest import ServerThread, db_url_for, make_settings

pytestmark = pytest.mark.server


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def entries(cache_dir: Path) -> list[str]:
    return sorted(
        p.relative_to(cache_dir).as_posix().split("/", 2)[2]
        for p in (cache_dir / "refs").rglob("*")
        if p.is_file()
    )


def test_embedded_pulls_of_a_number_or_digest_start_without_a_query(
    adapters_dir: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    settings = Settings(home=home, user="tester")  # type: ignore[call-arg]
    client = LocalClient.from_settings(settings)
    try:
        pushed = push_folder(client, adapters_dir / "lora_a", "acme/x", aliases=["prod"])
    finally:
        client.close()

    def reads() -> ClientReads:  # what one `adapters pull` opens
        return open_reads(settings, lambda: LocalClient.from_settings(settings))  # type: ignore[return-value]

    first, _ = pull_ref(reads(), "acme/x:1", tmp_path / "one")
    pull_ref(reads(), f"acme/x@{pushed.digest}", tmp_path / "two")
    assert not first.cached and entries(home / "cache") == [
        "acme/x/1.json",
        "acme/x/" + pushed.digest.replace(":", "-"),
    ]
    # A database no command can read (newer than this code: every query path refuses it)...
    with sqlite3.connect(home / "registry.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099'")
    # ...still serves the cached references: they asked nothing.
    for i, ref in enumerate(["acme/x:1", f"acme/x@{pushed.digest}"]):
        found, out = pull_ref(reads(), ref, tmp_path / f"cached{i}")
        assert found.cached and found.version == 1 and tree(out) == tree(tmp_path / "one")
    with pytest.raises(SchemaNewer):  # an alias is asked every time
        pull_ref(reads(), "acme/x@prod", tmp_path / "alias")
    with pytest.raises(SchemaNewer):  # and the latest
        pull_ref(reads(), "acme/x", tmp_path / "latest")


def test_embedded_rm_drops_the_entries_and_a_swept_version_is_not_served(
    adapters_dir: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    settings = Settings(home=home, user="tester")  # type: ignore[call-arg]
    client = LocalClient.from_settings(settings)
    try:
        push_folder(client, adapters_dir / "lora_a", "acme/mine")
        push_folder(client, adapters_dir / "lora_b", "acme/theirs")
        reads = open_reads(settings, lambda: client)
        pull_ref(reads, "acme/mine:1", tmp_path / "mine")
        pull_ref(reads, "acme/theirs:1", tmp_path / "theirs")
        # This client's own `rm`: the entries go with it; the pull says what the registry says.
        client.delete_version("acme/mine:1", force=True)
        with pytest.raises(NotFound, match="acme/mine"):
            pull_ref(reads, "acme/mine:1", tmp_path / "mine-again")
        # Deleted by someone else (a client keeping no entries): the blobs are still here, so the
        # cached version is pulled from them, as huggingface_hub serves a pinned commit offline...
        LocalClient(
            client.registry, "other", client.cache, principal=Principal.operator("other")
        ).delete_version("acme/theirs:1", force=True)
        found, _ = pull_ref(reads, "acme/theirs:1", tmp_path / "theirs-offline")
        assert found.cached
        # ...until they are swept: the entry is dropped and the registry's answer is the pull's.
        client.collect_garbage(grace_s=0)
        with pytest.raises(NotFound, match="acme/theirs"):
            pull_ref(reads, "acme/theirs:1", tmp_path / "theirs-gone")
        assert not (tmp_path / "theirs-gone").exists() and entries(home / "cache") == []
    finally:
        client.close()


class Requests:
    """The requests an HttpClient sends (an httpx event hook: the real client, counted)."""

    def __init__(self, client: HttpClient) -> None:
        self.sent: list[str] = []
        client.http.event_hooks = {"request": [self._record], "response": []}

    def _record(self, request: httpx.Request) -> None:
        self.sent.append(f"{request.method} {request.url.path}")

    def take(self) -> list[str]:
        sent, self.sent = self.sent, []
        return sent


@pytest.fixture
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ServerThread, Registry]]:
    settings = make_settings(tmp_path / "server", db_url_for("sqlite", tmp_path, request), "file", request)
    reg = Registry.from_settings(settings, migrate=True)
    try:
        with ServerThread(create_app(settings, reg), admin="bob") as srv:
            yield srv, reg
    finally:
        reg.close()


def test_http_pulls_of_cached_references_ask_the_server_nothing(
    served: tuple[ServerThread, Registry], adapters_dir: Path, tmp_path: Path
) -> None:
    srv, reg = served
    accounts.add_user(reg, "carol", principal=OPERATOR)
    accounts.grant(reg, "carol", "acme", "read", principal=OPERATOR)
    carol_token, _ = accounts.create_token(reg, "carol", name="tests", principal=OPERATOR)
    bob = HttpClient(srv.url, "bob", tmp_path / "bob-cache", token=srv.token)
    carol = HttpClient(srv.url, "carol", tmp_path / "carol-cache", token=carol_token)
    try:
        x = push_folder(bob, adapters_dir / "lora_a", "acme/x", aliases=["prod"])
        push_folder(bob, adapters_dir / "lora_b", "acme/y")
        reads, sent = ClientReads(carol), Requests(carol)
        pull_ref(reads, "acme/x:1", tmp_path / "x1")
        pull_ref(reads, "acme/y:1", tmp_path / "y1")
        assert "GET /v1/resolve" in sent.take()
        # Resolved once, the number starts without a request (the blobs are cached); a digest is
        # asked once (which version it names is the server's to say), then not again.
        found, out = pull_ref(reads, "acme/x:1", tmp_path / "again")
        assert found.cached and tree(out) == tree(tmp_path / "x1") and sent.take() == []
        found, _ = pull_ref(reads, f"acme/x@{x.digest}", tmp_path / "digest")
        assert not found.cached and sent.take() == ["GET /v1/resolve"]
        found, out = pull_ref(reads, f"acme/x@{x.digest}", tmp_path / "digest-again")
        assert found.cached and tree(out) == tree(tmp_path / "x1") and sent.take() == []
        pull_ref(reads, "acme/x@prod", tmp_path / "alias")  # an alias: asked every time
        assert sent.take() == ["GET /v1/resolve"]
        pull_ref(reads, "acme/x", tmp_path / "latest")
        assert sent.take() == ["GET /v1/resolve"]

        # Deleted on the server by someone else: pulled from the blobs carol still holds...
        bob.delete_version("acme/y:1", force=True)
        found, _ = pull_ref(reads, "acme/y:1", tmp_path / "y-offline")
        assert found.cached and sent.take() == []
        # ...but once a blob must come from the server, which no longer gives it, the entry is
        # dropped and the server's answer is the pull's.
        for f in found.files:
            carol.cache.delete(f.sha256)
        with pytest.raises(NotFound, match="acme/y"):
            pull_ref(reads, "acme/y:1", tmp_path / "y-gone")
        assert "GET /v1/resolve" in sent.take() and not (tmp_path / "y-gone").exists()
        assert entries(tmp_path / "carol-cache") == [
            "acme/x/1.json",
            "acme/x/" + x.digest.replace(":", "-"),
        ]

        # Deleted by this client: never served from its cache, blobs or not.
        bob_reads = ClientReads(bob)
        pull_ref(bob_reads, "acme/x:1", tmp_path / "bob-x1")
        bob.delete_version("acme/x:1", force=True)
        with pytest.raises(NotFound, match="acme/x"):
            pull_ref(bob_reads, "acme/x:1", tmp_path / "bob-x1-again")
    finally:
        bob.close()
        carol.close()


def test_an_entry_made_under_one_token_is_not_seen_under_another(
    served: tuple[ServerThread, Registry], adapters_dir: Path, tmp_path: Path
) -> None:
    """One cache folder, two callers: what bob (who may read acme) resolved does not let an
    anonymous caller, or a token without access to acme, pull without the server's say."""
    srv, reg = served
    accounts.add_user(reg, "dave", principal=OPERATOR)
    dave_token, _ = accounts.create_token(reg, "dave", name="tests", principal=OPERATOR)
    shared = tmp_path / "shared-cache"
    bob = HttpClient(srv.url, "bob", shared, token=srv.token)
    others = [
        HttpClient(srv.url, "anon", shared, token=""),
        HttpClient(srv.url, "dave", shared, token=dave_token),
    ]
    try:
        push_folder(bob, adapters_dir / "lora_a", "acme/x")
        found, _ = pull_ref(ClientReads(bob), "acme/x:1", tmp_path / "bob")
        found, _ = pull_ref(ClientReads(bob), "acme/x:1", tmp_path / "bob-again")
        assert found.cached  # bob's entry, and the blobs are in the shared cache
        for n, other in enumerate(others):
            sent = Requests(other)
            with pytest.raises(NotFound):
                pull_ref(ClientReads(other), "acme/x:1", tmp_path / f"other{n}")
            assert sent.take() == ["GET /v1/resolve"]
    finally:
        bob.close()
        for other in others:
            other.close()
