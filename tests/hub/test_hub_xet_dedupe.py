"""Xet deduplication through the registry, with the real client (huggingface_hub 2.x + hf_xet):
a new version of a large file sends only what changed even from a fresh client cache (the
server's dedupe answer), the answer offers only files the caller may use, xorbs live in the blob
store and gc reclaims them under the blobs' rules, and `hf upload` goes through Xet."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from bench.lora_file import data_bytes, lora_head, n_for_mib, write_lora
from registry.access.principal import OPERATOR
from registry.api import create_app
from registry.db import models as m
from registry.db.engine import unit_of_work
from registry.formats import xet as fmt
from registry.refs import Ref, parse_repo
from registry.services import accounts, gc, lifecycle, xet_store
from registry.services.context import Registry
from tests.conftest import ServerThread, db_url_for, make_settings, resource_params
from tests.hub.clients import run_client
from tests.hub.test_hub_write import files_of, make_public, versions

pytestmark = pytest.mark.server

MiB = 1024**2


@pytest.fixture(params=resource_params("sqlite-file", "postgresql-s3"))
def xet_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ServerThread, Registry]]:
    db, backend = str(request.param).split("-")
    settings = make_settings(tmp_path, db_url_for(db, tmp_path, request), backend, request)
    reg = Registry.from_settings(settings, migrate=True)
    with ServerThread(create_app(settings, reg)) as srv:
        yield srv, reg
    reg.close()


def cas_bytes_received(url: str) -> int:
    """What the server counted on its CAS routes (request bodies: xorbs, shards), from /metrics."""
    page = httpx.get(f"{url}/metrics").text
    return int(
        sum(
            s.value
            for family in text_string_to_metric_families(page)
            if family.name == "adapters_http_request_body_bytes"
            for s in family.samples
            if s.name.endswith("_total") and s.labels.get("route", "").startswith("/api/xet-cas")
        )
    )


def change_bytes(data: bytes, fraction: float, places: int, seed: int) -> bytes:
    """`data` with `fraction` of its bytes replaced, in `places` runs spread over the file."""
    rng = random.Random(seed)
    out = bytearray(data)
    run = int(len(data) * fraction) // places
    stride = len(data) // places
    for i in range(places):
        at = i * stride + rng.randrange(0, stride - run)
        out[at : at + run] = rng.randbytes(run)
    return bytes(out)


def write_adapter(folder: Path, size_mib: int, seed: int) -> tuple[bytes, bytes]:
    """A LoRA adapter (one q_proj pair of random float32 totalling `size_mib` MiB); returns the
    weights file's safetensors header and tensor bytes."""
    r, n = 16, n_for_mib(size_mib)
    data = random.Random(seed).randbytes(data_bytes(r, n))
    write_lora(folder, r=r, n=n, data=data, lora_alpha=32)
    return lora_head(r, n), data


def upload(server: ServerThread, hf_home: Path, repo: str, folder: Path, token: str | None = None) -> str:
    """upload_folder through Xet from a fresh client cache (HF_HOME, hence HF_XET_CACHE, is new)."""
    shutil.rmtree(hf_home, ignore_errors=True)
    got = run_client(
        server.url,
        hf_home,
        f"""
        api = hf.HfApi()
        api.create_repo("{repo}", exist_ok=True)
        info = api.upload_folder(repo_id="{repo}", folder_path="{folder}")
        out(info.oid)
        """,
        HF_HUB_DISABLE_XET="",
        HF_TOKEN=token or server.token,
    )
    return str(got)


def test_second_upload_of_a_changed_file_sends_a_tenth(
    xet_server: tuple[ServerThread, Registry], tmp_path: Path
) -> None:
    """A 24 MiB adapter of random weights, then the same with 1% of its tensor bytes changed in 8
    places, each uploaded from an empty client cache: the second upload's xorbs and shard are at
    most 10% of the first's bytes (server-side counters), because the dedupe query offers the first
    version's xorbs."""
    server, reg = xet_server
    folder = tmp_path / "adapter"
    head, data = write_adapter(folder, 24, seed=1)
    before = cas_bytes_received(server.url)
    upload(server, tmp_path / "hf1", "acme/big", folder)
    sent_first = cas_bytes_received(server.url) - before
    assert sent_first >= len(data)  # random bytes do not compress: all of it went through the CAS

    changed = head + change_bytes(data, 0.01, 8, seed=2)
    (folder / "adapter_model.safetensors").write_bytes(changed)
    before = cas_bytes_received(server.url)
    upload(server, tmp_path / "hf2", "acme/big", folder)
    sent_second = cas_bytes_received(server.url) - before
    assert sent_second <= 0.10 * sent_first, (sent_second, sent_first)
    assert [v.version for v in versions(reg, "acme/big")] == [1, 2]
    want = "sha256:" + hashlib.sha256(changed).hexdigest()
    assert files_of(reg, "acme/big", 2)["adapter_model.safetensors"] == want
    make_public(reg, "acme")
    url = f"{server.url}/acme/big/resolve/main/adapter_model.safetensors"
    assert httpx.get(url, follow_redirects=True).content == changed


def _first_chunk_of(reg: Registry, digest: str) -> str:
    with unit_of_work(reg.sessions) as session:
        terms = session.scalar(select(m.XetFile.terms).where(m.XetFile.digest == digest))
        assert terms, "the file was rebuilt from xorbs"
        xorb, start, _ = terms[0]
        packed = session.scalar(select(m.XetXorb.chunks).where(m.XetXorb.hash == xorb))
    assert packed is not None
    return fmt.to_hex(fmt.unpack_index(fmt.from_hex(xorb), bytes(packed)).chunks[start][0])


def _cas_token(server: ServerThread, repo: str, token: str) -> dict[str, str]:
    answer = httpx.get(
        f"{server.url}/api/models/{repo}/xet-write-token/main", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['accessToken']}"}


def test_dedupe_answer_offers_only_what_the_caller_may_read(
    xet_server: tuple[ServerThread, Registry], tmp_path: Path
) -> None:
    """A chunk of a private file is 404 to someone who may not read it, even knowing its hash; once
    the namespace is public the answer is a keyed shard (footer key set, no raw chunk hash in it)."""
    server, reg = xet_server
    folder = tmp_path / "secret"
    head, data = write_adapter(folder, 2, seed=3)
    upload(server, tmp_path / "hf", "acme/private", folder)
    digest = "sha256:" + hashlib.sha256(head + data).hexdigest()
    chunk = _first_chunk_of(reg, digest)

    accounts.add_user(reg, "bob", principal=OPERATOR)
    accounts.grant(reg, "bob", "bob", "write", principal=OPERATOR)
    bob, _ = accounts.create_token(reg, "bob", principal=OPERATOR)
    url = f"{server.url}/api/xet-cas/v1/chunks/default-merkledb/{chunk}"
    as_bob = _cas_token(server, "bob/mine", bob)
    refused = httpx.get(url, headers=as_bob)
    assert refused.status_code == 404, refused.text
    as_owner = httpx.get(url, headers=_cas_token(server, "acme/other", server.token))
    assert as_owner.status_code == 200

    make_public(reg, "acme")
    shown = httpx.get(url, headers=as_bob)
    assert shown.status_code == 200
    shard = shown.content
    assert shard[:32] == fmt.SHARD_TAG
    footer = shard[-fmt.SHARD_FOOTER_BYTES :]
    key = footer[72:104]
    assert key != bytes(32)
    assert fmt.from_hex(chunk) not in shard  # only keyed hashes
    assert fmt.keyed_hash(fmt.from_hex(chunk), key) in shard


def _xet_objects(reg: Registry) -> list[str]:
    return sorted(b.digest for b in xet_store.xet_blobs(reg).iter_blobs())


def test_xorbs_live_in_the_blob_store_and_gc_reclaims_them(
    xet_server: tuple[ServerThread, Registry], tmp_path: Path
) -> None:
    """Xorbs are objects of the blob store's xet/ prefix (not under ADAPTERS_HOME); gc keeps them
    while a version lists the file they rebuilt (or within the grace period) and reclaims them
    with the blob once the version is deleted."""
    server, reg = xet_server
    folder = tmp_path / "w"
    head, data = write_adapter(folder, 3, seed=4)
    upload(server, tmp_path / "hf", "acme/gone", folder)
    held = _xet_objects(reg)
    assert held and not list((tmp_path).rglob("xet/xorbs"))
    digest = "sha256:" + hashlib.sha256(head + data).hexdigest()
    assert digest not in held  # the xorbs are not the materialised blob

    kept = gc.collect_garbage(reg, grace_s=0, principal=OPERATOR)
    assert kept.xorbs_reclaimed == 0 and _xet_objects(reg) == held
    default = gc.collect_garbage(reg, dry_run=True, principal=OPERATOR)
    assert default.xorbs_reclaimed == 0

    lifecycle.delete_version(reg, Ref(parse_repo("acme/gone"), version=1), force=True, principal=OPERATOR)
    within_grace = gc.collect_garbage(reg, grace_s=timedelta(hours=1).total_seconds(), principal=OPERATOR)
    assert within_grace.xorbs_reclaimed == 0
    dry = gc.collect_garbage(reg, dry_run=True, grace_s=0, principal=OPERATOR)
    assert dry.xorbs_reclaimed == len(held) and _xet_objects(reg) == held
    swept = gc.collect_garbage(reg, grace_s=0, principal=OPERATOR)
    assert swept.xorbs_reclaimed == len(held) and swept.xorb_bytes_reclaimed > 3 * MiB
    assert digest in swept.digests and _xet_objects(reg) == []
    with unit_of_work(reg.sessions) as session:
        assert session.scalars(select(m.XetXorb.hash)).all() == []
        assert session.scalars(select(m.XetChunk.chunk)).all() == []


def test_hf_upload_cli_through_xet(
    xet_server: tuple[ServerThread, Registry], lora_a: Path, tmp_path: Path
) -> None:
    """`hf upload` (huggingface_hub 2.x's CLI, hf_xet installed, HF_HUB_DISABLE_XET unset) makes a
    version whose weights came as xorbs."""
    server, reg = xet_server
    hf = Path(sys.executable).with_name("hf")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_DISABLE_XET", "HF_TOKEN")}
    env |= {
        "HF_ENDPOINT": server.url,
        "HF_TOKEN": server.token,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    done = subprocess.run(
        [str(hf), "upload", "acme/cli-xet", str(lora_a), ".", "--commit-message", "from hf upload"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert [v.version for v in versions(reg, "acme/cli-xet")] == [1]
    want = {
        p.name: "sha256:" + hashlib.sha256(p.read_bytes()).hexdigest()
        for p in lora_a.iterdir()
        if p.is_file()
    }
    assert files_of(reg, "acme/cli-xet", 1) == want
    with unit_of_work(reg.sessions) as session:
        rebuilt = set(session.scalars(select(m.XetFile.digest)))
    assert want["adapter_model.safetensors"] in rebuilt  # it came through Xet, not LFS
