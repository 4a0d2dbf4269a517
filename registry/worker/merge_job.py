"""The merge job: pull the inputs, merge them with registry.tensors, push the result as a new
version of `into` with its lineage (a jobspec.lineage.MergeLineage)."""

from __future__ import annotations

from dataclasses import asdict

from registry.entities import PushRequest, PushResult, VersionInfo
from registry.errors import BaseMismatch, MergeRefused
from registry.formats.folder import list_folder
from registry.jobspec import MergeInputSpec, MergeParams, MergeResult
from registry.jobspec.lineage import MergeError, MergeLineage, ModuleError, Parent
from registry.services import versions
from registry.worker import provenance
from registry.worker.context import StageProgress
from registry.worker.io import JobIO
from registry.worker.publish import Published


def check_mergeable(infos: list[VersionInfo], allow_base_mismatch: bool) -> None:
    """Refuse what merges would silently get wrong (PEFT does: peft#3761, #3737)."""
    for info in infos:
        if info.peft_type != "LORA":
            raise MergeRefused(
                f"{info.ref} is {info.peft_type}; only LoRA adapters can be merged", ref=info.ref
            )
        if info.use_dora:
            raise MergeRefused(
                f"{info.ref} is a DoRA adapter: its magnitude vector rescales the whole weight, so DoRA "
                "updates do not add; merge into the base instead",
                ref=info.ref,
            )
    saved = {tuple(sorted(i.config.get("modules_to_save") or [])) for i in infos}
    if len(saved) > 1:
        raise MergeRefused(
            f"modules_to_save differ across inputs ({sorted(saved)}): full copies of a module cannot be "
            "weighted like low-rank updates"
        )
    bases = {i.base_model.name for i in infos if i.base_model.name}
    if len(bases) > 1 and not allow_base_mismatch:
        raise BaseMismatch(
            f"inputs were trained on different bases {sorted(bases)}; pass --allow-base-mismatch if they share "
            "one architecture (shapes are still checked)",
            bases=sorted(bases),
        )


def run_merge(io: JobIO, p: MergeParams) -> Published[MergeResult]:
    import torch

    from registry.tensors.lora import load_lora, save_lora
    from registry.tensors.merge import MergeOptions, merge_loras

    ctx = io.ctx
    infos = [io.version(i.ref) for i in p.inputs]
    check_mergeable(infos, p.allow_base_mismatch)
    opts = MergeOptions(
        method=p.method,
        rank=p.rank,
        energy=p.energy,
        density=p.density,
        majority_sign_method=p.majority_sign_method,
        seed=p.seed,
    )
    scratch = ctx.scratch()
    downloading = StageProgress(ctx, {"downloading": (0.0, 0.3)})
    device = ctx.torch_device()
    loaded = [
        load_lora(io.pull(info, scratch / f"in{n}", downloading), device) for n, info in enumerate(infos)
    ]
    extras = [ad.extra for ad in loaded]
    if any(set(e) != set(extras[0]) or any(not e[k].equal(extras[0][k]) for k in e) for e in extras):
        raise MergeRefused("inputs carry different non-LoRA tensors (modules_to_save); they cannot be merged")
    result = merge_loras(
        [(ad, i.weight) for ad, i in zip(loaded, p.inputs, strict=True)],
        opts,
        on_module=lambda done, total: ctx.report(
            0.3 + 0.6 * done / total, f"merging module {done + 1}/{total}"
        ),
    )
    dtypes = {ad.dtype for ad in loaded}
    out = scratch / "merged"
    save_lora(
        out, loaded[0].config, result.modules, dtypes.pop() if len(dtypes) == 1 else torch.float32, extras[0]
    )
    lineage = MergeLineage(
        kind="merge",
        method=p.method,
        parameters={k: v for k, v in asdict(opts).items() if k != "method"},
        parents=[
            Parent(ref=info.ref, digest=info.digest, weight=i.weight)
            for info, i in zip(infos, p.inputs, strict=True)
        ],
        error=MergeError(
            max=result.max_error,
            mean=result.mean_error,
            modules={k: ModuleError(rank=r.rank, rel_error=r.rel_error) for k, r in result.report.items()},
        ),
    )
    (out / "README.md").write_text(_model_card(infos, p.inputs, p.method, result.max_error), "utf-8")
    bases = {i.base_model.name for i in infos if i.base_model.name}
    request = PushRequest(
        files=io.store(list_folder(out)),
        base=bases.pop() if len(bases) == 1 else None,
        task=p.task,
        aliases=p.aliases,
        message=p.message or f"{p.method} merge of {len(p.inputs)} adapters",
        lineage=lineage.document(),
    )
    # The same commit as a push: the service re-validates the stored files and numbers the version.
    return io.publish(
        lambda on_commit: versions.commit_version(
            io.reg, p.into, request, io.user, on_commit=on_commit, principal=io.principal
        ),
        merge_result,
        provenance.Inputs(
            [provenance.dependency("versions", info.ref, info.digest) for info in infos]
            + [
                provenance.dependency("bases", info.base_model.name or fp, fp)
                for info in infos
                if (fp := info.base_fingerprint)
            ]
        ),
    )


def merge_result(res: PushResult) -> MergeResult:
    return MergeResult(
        ref=f"{res.repo}:{res.version}",
        repo=res.repo,
        version=res.version,
        digest=res.digest,
        created=res.created,
    )


def _model_card(infos: list[VersionInfo], inputs: list[MergeInputSpec], method: str, max_error: float) -> str:
    rows = "\n".join(
        f"| {info.ref} | `{info.digest}` | {i.weight:g} |" for info, i in zip(infos, inputs, strict=True)
    )
    return (
        f"# Merged LoRA adapter\n\nMade by adapter-registry, method `{method}`; largest relative error "
        f"of a module's update against the exact weighted sum: {max_error:.3g}.\n\n"
        f"| parent | digest | weight |\n|---|---|---:|\n{rows}\n"
    )
