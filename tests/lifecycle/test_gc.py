"""`adapters gc`: what it reclaims (refused pushes, deleted versions, cancelled jobs' outputs), what
it keeps (versions, bases, exports, anything within the grace period), dry runs, the exclusion
with commits, and a race of pushes against `gc --grace 0`; on {SQLite, PostgreSQL} x {file, S3}
(the race: both databases, file store)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import threading
import time
from pathlib import Path

import pytest

from registry.access.principal import OPERATOR, Principal
from registry.client.local import LocalClient
from registry.client.transfer import pull
from registry.db import models as m
from registry.db.engine import unit_of_work
from registry.entities import BaseRegistration, FileInfo, PushRequest
from registry.errors import BlobMissing, GcRunning, InvalidAdapter
from registry.jobspec import JobRequest
from registry.services import gc, jobs
from registry.services.context import Registry
from registry.services.timeutil import now
from storage import BlobStore
from tests.conftest import make_settings, resource_params
from tests.lifecycle.conftest import push


def put(store: BlobStore, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    store.put(io.BytesIO(data), digest, len(data))
    return digest


def stored(store: BlobStore) -> set[str]:
    return {b.digest for b in store.iter_blobs()}


def test_gc_reclaims_orphans_and_keeps_what_is_listed(
    client: LocalClient, registry: Registry, tmp_path: Path
) -> None:
    store = registry.store
    kept = push(client, tmp_path, "acme/x", 1, aliases=["prod"])
    # a base with uploaded files and an export (a derived base): their blobs are listed
    base_blob, export_blob = put(store, b"base weights"), put(store, b"exported weights")
    for name, blob, lineage in (
        ("acme/base", base_blob, None),
        ("acme/merged", export_blob, {"adapter": "x"}),
    ):
        client.register_base(
            BaseRegistration(
                names=[{"name": name}],  # type: ignore[list-item]
                fingerprint="sha256:" + hashlib.sha256(name.encode()).hexdigest(),
                structure_signature="sha256:" + "1" * 64,
                modules=[],
                files=[FileInfo(path="model.safetensors", size=store.stat(blob).size, sha256=blob)],  # type: ignore[union-attr]
                lineage=lineage,
            )
        )
    # a refused push: its blob stays in the store, listed by nothing
    bad = put(store, b'{"peft_type": "LORA", "r": "x"}')
    with pytest.raises(InvalidAdapter):
        client.commit(
            "acme/x", PushRequest(files=[FileInfo(path="adapter_config.json", size=31, sha256=bad)])
        )
    # a deleted version: its weights blob is its own (the config blob is acme/x:1's too)
    gone = push(client, tmp_path, "acme/y", 2)
    client.delete_version("acme/y:1")
    gone_blob = next(f.sha256 for f in gone.info.files if f.path.endswith(".safetensors"))
    # a cancelled job's stored output
    job = jobs.submit(
        registry,
        JobRequest(type="merge", params={"inputs": [{"ref": "acme/x:1", "weight": 1.0}], "into": "acme/m"}),
        "tester",
        principal=OPERATOR,
    )
    job_blob = put(store, b"half a merge")
    jobs.cancel(registry, job.id, principal=OPERATOR)

    orphans = {bad, gone_blob, job_blob}
    before = stored(store)
    assert orphans <= before

    fresh = client.collect_garbage()  # default grace (a day): all of them are fresh
    assert fresh.blobs_reclaimed == 0 and stored(store) == before

    dry = client.collect_garbage(dry_run=True, grace_s=0)
    assert set(dry.digests) == orphans and dry.dry_run
    sizes = {b.digest: b.size for b in store.iter_blobs()}
    assert dry.bytes_reclaimed == sum(sizes[d] for d in orphans)
    assert stored(store) == before  # a dry run deletes nothing

    report = client.collect_garbage(grace_s=0)
    assert set(report.digests) == orphans
    assert report.blobs_reclaimed == 3 and report.blobs_scanned == len(before)
    assert report.blobs_kept == len(before) - 3
    assert stored(store) == before - orphans
    assert {base_blob, export_blob} <= stored(store)
    assert client.collect_garbage(grace_s=0).blobs_reclaimed == 0
    info, out = pull(client, "acme/x@prod", tmp_path / "out")  # verified on the way
    assert info.digest == kept.digest and (out / "adapter_model.safetensors").exists()
    with unit_of_work(registry.sessions) as session:
        assert session.get(m.Blob, gone_blob) is None and session.get(m.GcSweep, gone_blob) is None


def test_commit_refused_for_a_blob_being_swept(
    client: LocalClient, registry: Registry, tmp_path: Path
) -> None:
    first = push(client, tmp_path, "acme/x", 1)
    client.delete_version("acme/x:1")
    weights = next(f for f in first.info.files if f.path.endswith(".safetensors"))
    with unit_of_work(registry.sessions) as session:  # what a gc run records before it deletes
        session.add(m.GcSweep(digest=weights.sha256, run_id="r" * 32, started_at=now()))
    with pytest.raises(BlobMissing) as err:
        client.commit("acme/x", PushRequest(files=first.info.files))
    assert err.value.digest == weights.sha256
    # a second gc is refused while the first one's rows are fresh
    with pytest.raises(GcRunning, match="another gc") as refused:
        client.collect_garbage(grace_s=0)
    assert refused.value.code == "gc_running" and refused.value.status == 409


@pytest.mark.parametrize("db", resource_params("sqlite", "postgresql"))
@pytest.mark.slow  # races for 8 s on purpose
def test_pushes_racing_gc_never_commit_a_deleted_blob(
    db: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Pushes of fresh content and `gc --grace 0` in a loop, concurrently, for a bounded time: a
    push may be refused (blob_missing), but every version that committed pulls and verifies."""
    from storage.local import LocalBlobStore
    from tests.conftest import db_url_for

    settings = make_settings(tmp_path, db_url_for(db, tmp_path, request), "file", request)
    reg = Registry.from_settings(settings, migrate=True)
    committed: list[str] = []
    refused = [0]
    reclaimed = [0]
    stop = time.monotonic() + 8
    errors: list[BaseException] = []

    def pusher(k: int) -> None:
        client = LocalClient(
            reg, f"p{k}", LocalBlobStore(tmp_path / f"cache{k}"), principal=Principal.operator(f"p{k}")
        )
        seed = k * 100_000
        while time.monotonic() < stop:
            seed += 1
            # An orphan each round (what a killed push leaves): gc always has something to reclaim,
            # so the race is exercised whatever the timing of the pushes' own upload-commit gaps.
            orphan = os.urandom(64)
            reg.store.put(io.BytesIO(orphan), "sha256:" + hashlib.sha256(orphan).hexdigest(), len(orphan))
            try:
                committed.append(push(client, tmp_path / f"p{k}", f"race/r{k}", seed).info.ref)
            except BlobMissing:
                refused[0] += 1
            except BaseException as err:  # noqa: BLE001 - reported below
                errors.append(err)
                return

    def collector() -> None:
        while time.monotonic() < stop:
            try:
                reclaimed[0] += gc.collect_garbage(reg, grace_s=0, principal=OPERATOR).blobs_reclaimed
            except BaseException as err:  # noqa: BLE001
                errors.append(err)
                return
            time.sleep(random.uniform(0, 0.02))

    for k in range(3):
        (tmp_path / f"p{k}").mkdir()
    threads = [threading.Thread(target=pusher, args=(k,)) for k in range(3)]
    threads.append(threading.Thread(target=collector))
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        assert committed and reclaimed[0] > 0, (len(committed), refused[0], reclaimed[0])
        check = LocalClient(
            reg, "check", LocalBlobStore(tmp_path / "check-cache"), principal=Principal.operator("check")
        )
        for ref in committed:
            info = check.resolve(ref)
            for f in info.files:
                data = b"".join(reg.store.open(f.sha256))
                assert "sha256:" + hashlib.sha256(data).hexdigest() == f.sha256, ref
        print(json.dumps({"committed": len(committed), "refused": refused[0], "reclaimed": reclaimed[0]}))
    finally:
        reg.close()
