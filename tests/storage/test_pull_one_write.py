"""A pull writes each byte once: downloaded straight into the staging folder, hashed on the way,
the local cache taking the verified file by hard link; an interrupted pull leaves nothing."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from minio import Minio

from bench.lora_file import write_lora
from registry.access.principal import Principal
from registry.client.local import LocalClient
from registry.client.transfer import fetch_missing, pull, push_folder
from registry.errors import DigestMismatch, RegistryError
from registry.services.context import Registry
from storage import sha256_file
from storage.local import LocalBlobStore
from tests.conftest import ServerThread, make_settings
from tests.storage.test_resume_download import CuttingProxy

pytestmark = pytest.mark.server

WEIGHTS = "adapter_model.safetensors"


def write_adapter(folder: Path, n: int = 24 * 1024) -> Path:
    """A LoRA adapter of one q_proj pair, A [4, n] and B [n, 4] in F32 (n = 24 Ki: 768 KiB)."""
    folder.mkdir(parents=True)
    return write_lora(folder, r=4, n=n)


@pytest.fixture
def s3_registry(tmp_path: Path, request: pytest.FixtureRequest) -> Registry:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'registry.db'}", "s3", request)
    reg = Registry.from_settings(settings, migrate=True)
    request.addfinalizer(reg.close)
    return reg


def cached(cache: LocalBlobStore) -> list[Path]:
    return [p for p in (cache.root / "sha256").rglob("*") if p.is_file()]


def test_a_pull_from_s3_writes_once_and_the_cache_entry_verifies(
    s3_registry: Registry, tmp_path: Path
) -> None:
    cache = LocalBlobStore(tmp_path / "cache")
    client = LocalClient(s3_registry, "tester", cache, principal=Principal.operator("tester"))
    src = write_adapter(tmp_path / "adapter")
    push_folder(client, src, "acme/one")
    info, out = pull(client, "acme/one", tmp_path / "out")
    for f in info.files:
        pulled = out / f.path
        assert pulled.read_bytes() == (src / f.path).read_bytes()
        entry = cache.path_for(f.sha256)
        # The cache took the downloaded file itself: one inode, two names, written once.
        assert os.path.samefile(entry, pulled)
        assert sha256_file(str(entry)).digest == f.sha256
    assert not any((cache.root / "tmp").iterdir())
    # A second pull copies out of the cache (a file of its own, not a third name).
    _, again = pull(client, "acme/one", tmp_path / "again")
    assert not os.path.samefile(again / WEIGHTS, out / WEIGHTS)
    assert (again / WEIGHTS).read_bytes() == (src / WEIGHTS).read_bytes()
    # A pulled file edited in place changes the cache entry it shares: the next pull notices,
    # drops that entry and downloads the blob again; the user's edit is kept.
    with (out / WEIGHTS).open("r+b") as edited:
        edited.seek(100)
        edited.write(b"edited")
    weights = next(f for f in info.files if f.path == WEIGHTS)
    _, third = pull(client, "acme/one", tmp_path / "third")
    assert (third / WEIGHTS).read_bytes() == (src / WEIGHTS).read_bytes()
    assert sha256_file(str(cache.path_for(weights.sha256))).digest == weights.sha256
    assert os.path.samefile(cache.path_for(weights.sha256), third / WEIGHTS)
    assert b"edited" in (out / WEIGHTS).read_bytes()
    assert not any((cache.root / "tmp").iterdir())


def test_a_pull_interrupted_mid_file_leaves_no_cache_entry_and_no_folder(
    s3_registry: Registry, tmp_path: Path, s3_endpoint: str
) -> None:
    src = write_adapter(tmp_path / "adapter", n=256 * 1024)  # 8 MiB of weights
    push_folder(
        LocalClient(
            s3_registry, "tester", LocalBlobStore(tmp_path / "c0"), principal=Principal.operator("tester")
        ),
        src,
        "acme/cut",
    )
    # The same registry read through a proxy that cuts every response after 1 MB: the small
    # config passes, the 8 MiB weights are cut mid-file.
    proxy = CuttingProxy(int(s3_endpoint.rsplit(":", 1)[1]), dict.fromkeys(range(10), 1_000_000))
    store = s3_registry.store
    client = Minio(proxy.url.removeprefix("http://"), "test", "test", secure=False, region="us-east-1")
    cut_store = type(store)(client, store.bucket, store.prefix)  # type: ignore[call-arg, attr-defined]
    cut = Registry(s3_registry.engine, s3_registry.sessions, cut_store, s3_registry.limits)
    cache = LocalBlobStore(tmp_path / "cache")
    try:
        with pytest.raises(RegistryError):
            pull(
                LocalClient(cut, "tester", cache, principal=Principal.operator("tester")),
                "acme/cut",
                tmp_path / "pulled" / "out",
            )
    finally:
        proxy.close()
    assert proxy.requests  # the pull did reach the store, and was cut
    # The file cut mid-way left no cache entry; the config, downloaded whole before, may stay.
    weights = sha256_file(str(src / WEIGHTS)).digest
    assert cache.stat(weights) is None
    config = sha256_file(str(src / "adapter_config.json")).digest
    assert {p.name for p in cached(cache)} <= {config.removeprefix("sha256:")}
    assert not (cache.root / "tmp").exists() or not any((cache.root / "tmp").iterdir())
    assert list((tmp_path / "pulled").iterdir()) == []  # no folder, no staging folder


def test_the_file_backend_copies_out_of_its_store(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A local blob directory is its own cache: a pull copies from it (verified), and never links
    the registry's own blob into a folder someone may edit."""
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'registry.db'}", "file", request)
    reg = Registry.from_settings(settings, migrate=True)
    try:
        assert isinstance(reg.store, LocalBlobStore)
        client = LocalClient(reg, "tester", reg.store, principal=Principal.operator("tester"))
        src = write_adapter(tmp_path / "adapter")
        push_folder(client, src, "acme/file")
        info, out = pull(client, "acme/file", tmp_path / "out")
        for f in info.files:
            assert (out / f.path).read_bytes() == (src / f.path).read_bytes()
            assert not os.path.samefile(out / f.path, reg.store.path_for(f.sha256))
        # A corrupt blob in the registry's own store is reported, never deleted by a pull.
        weights = next(f for f in info.files if f.path == WEIGHTS)
        blob = reg.store.path_for(weights.sha256)
        blob.chmod(0o644)
        with blob.open("r+b") as damaged:
            damaged.seek(100)
            damaged.write(b"damaged")
        with pytest.raises(DigestMismatch, match="corrupt"):
            pull(client, "acme/file", tmp_path / "again")
        assert blob.exists()
        assert not (tmp_path / "again").exists()
    finally:
        reg.close()


def test_a_pull_over_http_writes_once_too(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """HttpClient: the verified download enters the cache and the pulled folder as one file."""
    from registry.api import create_app
    from registry.client.http import HttpClient

    settings = make_settings(tmp_path / "server", f"sqlite:///{tmp_path / 'registry.db'}", "file", request)
    reg = Registry.from_settings(settings, migrate=True)
    try:
        with ServerThread(create_app(settings, reg, worker=False)) as srv:
            client = HttpClient(srv.url, "tester", tmp_path / "cache", token=srv.token)
            src = write_adapter(tmp_path / "adapter")
            push_folder(client, src, "acme/http")
            info, out = pull(client, "acme/http", tmp_path / "out")
            client.http.close()
    finally:
        reg.close()
    cache = LocalBlobStore(tmp_path / "cache")
    for f in info.files:
        assert (out / f.path).read_bytes() == (src / f.path).read_bytes()
        assert os.path.samefile(out / f.path, cache.path_for(f.sha256))
        assert sha256_file(str(cache.path_for(f.sha256))).digest == f.sha256
    assert not any((cache.root / "tmp").iterdir())  # no partial download left


def test_a_pull_over_http_across_filesystems_copies_once_verified(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the cache and the pulled folder are on different filesystems (os.link fails with
    EXDEV) the pulled file is a copy of its own, verified, with no temporary file left anywhere;
    and a blob the server serves damaged is refused, leaving neither cache entry nor folder."""
    from registry.api import create_app
    from registry.client.http import HttpClient

    settings = make_settings(tmp_path / "server", f"sqlite:///{tmp_path / 'registry.db'}", "file", request)
    reg = Registry.from_settings(settings, migrate=True)
    try:
        with ServerThread(create_app(settings, reg, worker=False)) as srv:
            client = HttpClient(srv.url, "tester", tmp_path / "cache", token=srv.token)
            src = write_adapter(tmp_path / "adapter")
            push_folder(client, src, "acme/xdev")

            def cross_device(src: object, dst: object, **kwargs: object) -> None:
                raise OSError(errno.EXDEV, "Invalid cross-device link")

            monkeypatch.setattr(os, "link", cross_device)
            info, out = pull(client, "acme/xdev", tmp_path / "out")
            monkeypatch.undo()
            assert isinstance(reg.store, LocalBlobStore)
            weights = next(f for f in info.files if f.path == WEIGHTS)
            blob = reg.store.path_for(weights.sha256)
            blob.chmod(0o644)
            with blob.open("r+b") as damaged:
                damaged.seek(100)
                damaged.write(b"damaged")
            fresh = HttpClient(srv.url, "tester", tmp_path / "cache2", token=srv.token)
            with pytest.raises(DigestMismatch):
                pull(fresh, "acme/xdev", tmp_path / "damaged")
            client.http.close()
            fresh.http.close()
    finally:
        reg.close()
    cache = LocalBlobStore(tmp_path / "cache")
    for f in info.files:
        assert (out / f.path).read_bytes() == (src / f.path).read_bytes()
        assert not os.path.samefile(out / f.path, cache.path_for(f.sha256))  # a copy of its own
        assert sha256_file(str(cache.path_for(f.sha256))).digest == f.sha256
    assert sorted(p.name for p in out.iterdir()) == sorted(f.path for f in info.files)
    assert not any((cache.root / "tmp").iterdir())
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left
    assert not (tmp_path / "damaged").exists()
    assert LocalBlobStore(tmp_path / "cache2").stat(weights.sha256) is None
    assert not any((tmp_path / "cache2" / "tmp").iterdir())


def test_a_worker_refetches_a_cache_entry_a_pull_left_wrong(s3_registry: Registry, tmp_path: Path) -> None:
    """A cache entry is a pulled file (same inode): edited in place, or cut short by a power loss
    (a pull's output is not fsynced). fetch_missing, which hands entries to a worker as they are,
    hashes each and downloads again what is wrong; a right entry is kept as it is."""
    cache = LocalBlobStore(tmp_path / "cache")
    client = LocalClient(s3_registry, "tester", cache, principal=Principal.operator("tester"))
    src = write_adapter(tmp_path / "adapter")
    push_folder(client, src, "acme/w")
    info, out = pull(client, "acme/w", tmp_path / "out")
    weights = next(f for f in info.files if f.path == WEIGHTS)
    config = next(f for f in info.files if f.path != WEIGHTS)
    pulled = out / WEIGHTS
    data = bytearray(pulled.read_bytes())
    data[-1] ^= 1  # same size, other bytes: only a hash tells
    pulled.write_bytes(bytes(data))
    (out / config.path).write_text("{}")  # another size
    kept_inode = cache.path_for(config.sha256).stat().st_ino
    fetch_missing(client, info.files, None)
    for f in info.files:
        assert sha256_file(str(cache.path_for(f.sha256))).digest == f.sha256
    assert not os.path.samefile(cache.path_for(weights.sha256), pulled)  # a new entry
    assert cache.path_for(config.sha256).stat().st_ino != kept_inode
    # Right entries stay: nothing is downloaded again.
    inodes = {f.sha256: cache.path_for(f.sha256).stat().st_ino for f in info.files}
    fetch_missing(client, info.files, None)
    assert {f.sha256: cache.path_for(f.sha256).stat().st_ino for f in info.files} == inodes
