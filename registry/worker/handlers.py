"""One function per job type: typed parameters in, the job's result (links to outputs) out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from registry.entities import PushResult
from registry.jobspec import MergeParams, parse_params
from registry.worker.context import JobContext, WorkerClient


class StageProgress:
    """A TransferProgress (bytes) mapped onto a window of the job's progress fraction."""

    def __init__(self, ctx: JobContext, windows: dict[str, tuple[float, float]]) -> None:
        self.ctx = ctx
        self.windows = windows
        self.window = (0.0, 0.0)
        self.total = 0
        self.done = 0
        self.description = ""

    def start(self, description: str, total_bytes: int) -> None:
        self.window = self.windows.get(description, (self.ctx.progress, self.ctx.progress))
        self.total, self.done, self.description = max(total_bytes, 1), 0, description
        self.ctx.report(self.window[0], description)

    def advance(self, n: int) -> None:
        self.done += n
        lo, hi = self.window
        self.ctx.report(lo + (hi - lo) * min(1.0, self.done / self.total))

    def finish(self) -> None:
        self.ctx.report(self.window[1])


def version_result(res: PushResult) -> dict[str, Any]:
    return {
        "kind": "version",
        "ref": f"{res.repo}:{res.version}",
        "repo": res.repo,
        "version": res.version,
        "digest": res.digest,
        "created": res.created,
    }


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
}
