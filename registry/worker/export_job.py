"""The export job: an adapter merged into its base, registered as a derived model in the store with
its lineage (a jobspec.lineage.ExportLineage)."""

from __future__ import annotations

import json

from registry.client.bases import registration
from registry.entities import BaseInfo, FileInfo
from registry.errors import ExportRefused
from registry.jobspec import ExportParams, ExportResult
from registry.jobspec.lineage import ExportLineage
from registry.services import bases
from registry.worker import provenance
from registry.worker.io import JobIO
from registry.worker.publish import Published


def run_export(io: JobIO, p: ExportParams) -> Published[ExportResult]:
    from registry.formats.model_folder import extra_files, inspect_model, weight_files
    from registry.tensors.export import EXPORTABLE, export_merged

    ctx = io.ctx
    adapter = io.version(p.ref)
    if adapter.peft_type not in EXPORTABLE:
        raise ExportRefused(
            f"{adapter.ref} is {adapter.peft_type}; export merges LoRA (with DoRA, rslora, patterns) and IA3 "
            "adapters into weights",
            peft_type=adapter.peft_type,
        )
    scratch = ctx.scratch()
    folder, base = io.base(p.base, p.base_path, scratch / "base")
    adapter_dir = io.pull(adapter, scratch / "adapter")
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
    files = io.store([(path.name, path) for path in paths])
    facts = inspect_model(out, with_fingerprint=False)
    facts.fingerprint = result.fingerprint
    name = p.into or f"{adapter.repo}-v{adapter.version}-merged" + (f"-{p.dtype}" if p.dtype else "")
    data = registration(facts, [name], None)
    data.files = files
    data.lineage = ExportLineage(
        base_fingerprint=base.fingerprint,
        base=p.base,
        adapter=adapter.ref,
        adapter_digest=adapter.digest,
        dtype=result.dtype,
        merged_modules=len(result.merged_modules),
        replaced_tensors=result.replaced_tensors,
    ).document()
    return io.publish(
        lambda on_commit: bases.register_base(io.reg, data, on_commit=on_commit, principal=io.principal),
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
