"""The check-4bit job: run the adapter on a 4-bit base and record the verdict on the version, under
the variant checked."""

from __future__ import annotations

from registry.client.transfer import pull
from registry.jobspec import Check4bitParams, Check4bitResult, params_as
from registry.refs import parse_ref
from registry.services.qlora import record_verdict
from registry.worker.context import JobContext
from registry.worker.export_job import local_base
from registry.worker.publish import OnCommit, Published, publish


def run_check4bit(ctx: JobContext) -> Published[Check4bitResult]:
    from registry.tensors.qlora import Variant, check_4bit

    p = params_as(Check4bitParams, ctx.claim.params)
    client = ctx.client()
    adapter = client.resolve(p.ref)
    scratch = ctx.scratch()
    folder, base = local_base(ctx, client, p.base, p.base_path, scratch / "base")
    _, adapter_dir = pull(client, adapter.ref, scratch / "adapter")
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
            ctx.reg,
            parse_ref(adapter.ref),
            base.id,
            report,
            ctx.claim.job_id,
            on_commit,
            principal=ctx.principal(),
        )

    return publish(ctx, record, lambda _: result)
