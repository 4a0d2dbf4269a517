"""The check-4bit job: run the adapter on a 4-bit base and record the verdict on the version, under
the variant checked."""

from __future__ import annotations

from registry.jobspec import Check4bitParams, Check4bitResult
from registry.refs import parse_ref
from registry.services.qlora import record_verdict
from registry.worker.io import JobIO
from registry.worker.publish import OnCommit, Published


def run_check4bit(io: JobIO, p: Check4bitParams) -> Published[Check4bitResult]:
    from registry.tensors.qlora import Variant, check_4bit

    ctx = io.ctx
    adapter = io.version(p.ref)
    scratch = ctx.scratch()
    folder, base = io.base(p.base, p.base_path, scratch / "base")
    adapter_dir = io.pull(adapter, scratch / "adapter")
    report = check_4bit(
        folder,
        adapter_dir,
        probe=p.probe,
        probe_length=p.probe_length,
        seed=p.seed,
        variant=Variant(p.quant, p.double_quant, p.compute_dtype),
        device=ctx.torch_device(),
        progress=lambda fraction, stage: ctx.report(0.1 + 0.85 * fraction, stage),
    )
    report["adapter"] = {"ref": adapter.ref, "digest": adapter.digest}
    report["base"] = {"id": base.id, "fingerprint": base.fingerprint, "names": [n.name for n in base.names]}
    result = Check4bitResult(ref=adapter.ref, verdict=report["verdict"], report=report)

    def record(on_commit: OnCommit[None]) -> None:
        # The verdict on (version, base) and the job's success: one transaction.
        record_verdict(
            io.reg,
            parse_ref(adapter.ref),
            base.id,
            report,
            ctx.claim.job_id,
            on_commit,
            principal=io.principal,
        )

    return io.publish(record, lambda _: result)
