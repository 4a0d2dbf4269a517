"""One function per job type: typed parameters in, the job's result (links to outputs) out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from registry.jobspec import MergeParams, parse_params
from registry.worker.check4bit_job import run_check4bit
from registry.worker.context import JobContext, StageProgress, WorkerClient, version_result
from registry.worker.export_job import run_export


def run_merge(ctx: JobContext) -> dict[str, Any]:
    from registry.client.merge import MergeInput, merge_refs

    p = parse_params("merge", ctx.claim.params)
    assert isinstance(p, MergeParams)
    client = WorkerClient(ctx, version_result)
    progress = StageProgress(ctx, {"downloading": (0.0, 0.3), "uploading": (0.9, 1.0)})
    result = merge_refs(
        client,
        [MergeInput(i.ref, i.weight) for i in p.inputs],
        p.into,
        method=p.method,
        rank=p.rank,
        energy=p.energy,
        density=p.density,
        majority_sign_method=p.majority_sign_method,
        seed=p.seed,
        allow_base_mismatch=p.allow_base_mismatch,
        task=p.task,
        aliases=p.aliases,
        message=p.message,
        progress=progress,
        on_merge=lambda done, total: ctx.report(
            0.3 + 0.6 * done / total, f"merging module {done + 1}/{total}"
        ),
        device=ctx.torch_device(),
    )
    return version_result(result)


HANDLERS: dict[str, Callable[[JobContext], dict[str, Any]]] = {
    "merge": run_merge,
    "export": run_export,
    "check-4bit": run_check4bit,
}
