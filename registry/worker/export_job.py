"""The export job: an adapter merged into its base, registered as a derived model in the store."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from registry.client.bases import registration
from registry.client.local import LocalClient
from registry.client.transfer import fetch_missing, pull
from registry.entities import BaseInfo, FileInfo
from registry.errors import BadRequest, BaseNotUploaded, ExportRefused
from registry.jobspec import ExportParams, ExportResult, params_as
from registry.services import bases
from registry.worker import provenance
from registry.worker.context import JobContext, StageProgress
from registry.worker.publish import Published, publish, store_outputs


def local_base(
    ctx: JobContext, client: LocalClient, base: str, base_path: str | None, folder: Path
) -> tuple[Path, BaseInfo]:
    """(model folder, registered base) of the job: the embedded caller's own folder (registered by
    fingerprint, as `push --base PATH` does), or the base's uploaded files linked (or downloaded)
    out of the blob store into scratch space."""
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
    materialize(ctx, client, info.files, folder)
    return folder, info


def materialize(ctx: JobContext, client: LocalClient, files: list[FileInfo], folder: Path) -> None:
    """The base's files as a model folder: fetched into the worker's cache, then hard-linked out."""
    fetch_missing(client, files, StageProgress(ctx, {"downloading": (0.0, 0.1)}))
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        target = folder / f.path
        if not target.resolve().is_relative_to(folder.resolve()):
            raise BadRequest(f"base file path {f.path!r} leaves the model folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        source = ctx.cache.path_for(f.sha256)
        try:
            os.link(source, target)  # blobs are immutable: a hard link costs nothing
        except OSError:
            shutil.copyfile(source, target)


def run_export(ctx: JobContext) -> Published[ExportResult]:
    from registry.formats.model_folder import extra_files, inspect_model, weight_files
    from registry.tensors.export import EXPORTABLE, export_merged

    p = params_as(ExportParams, ctx.claim.params)
    client = ctx.client()
    adapter = client.resolve(p.ref)
    if adapter.peft_type not in EXPORTABLE:
        raise ExportRefused(
            f"{adapter.ref} is {adapter.peft_type}; export merges LoRA (with DoRA, rslora, patterns) and IA3 "
            "adapters into weights",
            peft_type=adapter.peft_type,
        )
    scratch = ctx.scratch()
    folder, base = local_base(ctx, client, p.base, p.base_path, scratch / "base")
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
    ctx.report(0.85)
    files = store_outputs(ctx, [(path.name, path) for path in paths])
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
    return publish(
        ctx,
        lambda on_commit: bases.register_base(ctx.reg, data, on_commit=on_commit, principal=ctx.principal()),
        lambda b: export_result(b, files),
        provenance.Inputs(
            [provenance.dependency("versions", adapter.ref, adapter.digest)]
            + (
                [provenance.dependency("bases", p.base or base.fingerprint, base.fingerprint)]
                if base.fingerprint
                else []
            )
        ),
    )


def export_result(b: BaseInfo, files: list[FileInfo]) -> ExportResult:
    return ExportResult(
        base_id=b.id,
        ref=b.fingerprint,
        names=[n.name for n in b.names],
        fingerprint=b.fingerprint,
        files=files,
    )
