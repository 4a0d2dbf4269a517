"""The export job: an adapter merged into its base, registered as a derived model in the store."""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from registry.client.bases import registration
from registry.client.transfer import fetch_missing, pull
from registry.entities import BaseInfo, FileInfo
from registry.errors import BadRequest, BaseNotUploaded, ExportRefused
from registry.jobspec import ExportParams, parse_params
from registry.services.blobs import upload_blob
from registry.worker.context import JobContext, StageProgress, WorkerClient, version_result
from storage.base import sha256_file
from storage.local import LocalBlobStore


def local_base(ctx: JobContext, client: WorkerClient, base: str, folder: Path) -> tuple[Path, BaseInfo]:
    """(model folder, registered base) of the job: the embedded caller's own folder (registered by
    fingerprint, as `push --base PATH` does), or the base's uploaded files linked (or downloaded)
    out of the blob store into scratch space."""
    base_path = ctx.claim.params.get("base_path")
    if base_path:
        from registry.formats.model_folder import inspect_model

        path = Path(base_path)
        if not path.is_dir():
            raise BadRequest(f"base folder {path} does not exist on this worker", base=base)
        ctx.report(0.0, "fingerprinting the base")
        return path, client.register_base(registration(inspect_model(path), [], None))
    info = client.get_base(base)
    if not info.files:
        raise BaseNotUploaded(
            f"base {base!r} was registered without its weights; register it with `adapters base add PATH "
            "--upload` so workers can read it",
            base=base,
        )
    materialize(ctx, client, info, folder)
    return folder, info


def materialize(ctx: JobContext, client: WorkerClient, info: BaseInfo, folder: Path) -> None:
    files = info.files or []
    fetch_missing(client, files, StageProgress(ctx, {"downloading": (0.0, 0.1)}))
    folder.mkdir(parents=True, exist_ok=True)
    assert isinstance(client.cache, LocalBlobStore)
    for f in files:
        target = folder / f.path
        if not target.resolve().is_relative_to(folder.resolve()):
            raise BadRequest(f"base file path {f.path!r} leaves the model folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        source = client.cache.path_for(f.sha256)
        try:
            os.link(source, target)  # blobs are immutable: a hard link costs nothing
        except OSError:
            shutil.copyfile(source, target)


def run_export(ctx: JobContext) -> dict[str, Any]:
    from registry.formats.model_folder import extra_files, inspect_model, weight_files
    from registry.tensors.export import EXPORTABLE, export_merged

    p = parse_params("export", ctx.claim.params)
    assert isinstance(p, ExportParams)
    client = WorkerClient(ctx, version_result)
    adapter = client.resolve(p.ref)
    if adapter.peft_type not in EXPORTABLE:
        raise ExportRefused(
            f"{adapter.ref} is {adapter.peft_type}; export merges LoRA (with DoRA, rslora, patterns) and IA3 "
            "adapters into weights",
            peft_type=adapter.peft_type,
        )
    scratch = ctx.scratch()
    folder, base = local_base(ctx, client, p.base, scratch / "base")
    _, adapter_dir = pull(client, adapter.ref, scratch / "adapter")  # the version resolved above
    config = json.loads((folder / "config.json").read_text("utf-8"))
    out = scratch / "out"
    result = export_merged(
        weight_files(folder),
        adapter_dir,
        out,
        config=config,
        dtype=p.dtype,
        max_shard_size=p.max_shard_size,
        device=ctx.torch_device(),
        extra_sources=extra_files(folder),
        progress=lambda done, total: ctx.report(
            0.1 + 0.75 * done / total, f"merging tensors {done / total:.0%}"
        ),
    )
    paths = [w.path for w in result.files] + result.extra_files
    ctx.report(0.85, "hashing the shards")
    with ThreadPoolExecutor() as pool:  # the files' digests name their blobs; hashed in parallel
        digests = list(pool.map(lambda path: sha256_file(str(path)).digest, paths))
    uploading = StageProgress(ctx, {"uploading": (0.9, 1.0)})
    uploading.start("uploading", sum(path.stat().st_size for path in paths))
    files = []
    for path, digest in zip(paths, digests, strict=True):
        size = path.stat().st_size
        if isinstance(ctx.reg.store, LocalBlobStore):  # scratch and blobs share a disk: no copy
            ctx.reg.store.adopt(path, digest, size)
            uploading.advance(size)
        else:
            with path.open("rb") as f:
                upload_blob(ctx.reg.store, f, digest, size, uploading.advance)
        files.append(FileInfo(path=path.name, size=size, sha256=digest))
    uploading.finish()
    facts = inspect_model(out, with_fingerprint=False)
    facts.fingerprint = result.fingerprint
    name = p.into or f"{adapter.repo}-v{adapter.version}-merged" + (f"-{p.dtype}" if p.dtype else "")
    data = registration(facts, [name], None)
    data.files = files
    data.lineage = {
        "kind": "export",
        "base_fingerprint": base.fingerprint,
        "base": p.base,
        "adapter": adapter.ref,
        "adapter_digest": adapter.digest,
        "dtype": result.dtype,
        "merged_modules": len(result.merged_modules),
        "replaced_tensors": result.replaced_tensors,
    }
    derived = client.register_derived(data, lambda b: base_result(b, files))
    return base_result(derived, files)


def base_result(b: BaseInfo, files: list[FileInfo]) -> dict[str, Any]:
    return {
        "kind": "base",
        "base_id": b.id,
        "ref": b.fingerprint,
        "names": [n.name for n in b.names],
        "fingerprint": b.fingerprint,
        "files": [f.model_dump() for f in files],
    }
