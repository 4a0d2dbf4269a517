"""The upper half of each job kind's declaration: its body, bound to the kind registry/jobspec
declares (name, parameters, result). The worker runs a claim through `BODIES[claim.type]`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from registry.jobspec import CHECK_4BIT, EXPORT, KINDS, MERGE, JobKind, JobParams, JobResult
from registry.worker.check4bit_job import run_check4bit
from registry.worker.context import JobContext
from registry.worker.export_job import run_export
from registry.worker.io import JobIO
from registry.worker.merge_job import run_merge
from registry.worker.publish import Published

P = TypeVar("P", bound=JobParams)
R = TypeVar("R", bound=JobResult)


@dataclass(frozen=True)
class Body(Generic[P, R]):
    """A kind's body: typed parameters and the claim's one JobIO in, its output published (with
    the job's success, fenced) out. Only worker.publish makes a Published, so a body cannot end
    without publishing."""

    kind: JobKind[P, R]
    run: Callable[[JobIO, P], Published[R]]

    def __call__(self, ctx: JobContext) -> Published[R]:
        params = self.kind.parse(
            ctx.claim.params
        )  # as at submission; a stored job of an older version fails here
        return self.run(JobIO(ctx), params)


BODIES: dict[str, Body[Any, Any]] = {
    b.kind.name: b
    for b in (Body(MERGE, run_merge), Body(EXPORT, run_export), Body(CHECK_4BIT, run_check4bit))
}
if set(BODIES) != set(KINDS):
    raise RuntimeError(f"job kinds without a body: {sorted(set(KINDS) - set(BODIES))}")
