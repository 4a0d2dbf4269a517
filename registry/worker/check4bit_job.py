"""The check-4bit job: run the adapter on an NF4 base and record the verdict on the version."""

from __future__ import annotations

from typing import Any

from registry.client.transfer import pull
from registry.db.engine import unit_of_work
from registry.jobspec import Check4bitParams, parse_params
from registry.refs import parse_ref
from registry.services.qlora import record_check
from registry.services.versions import resolve_row
from registry.worker.context import JobContext, WorkerClient, version_result
from registry.worker.export_job import local_base


def run_check4bit(ctx: JobContext) -> dict[str, Any]:
    from registry.tensors.qlora import check_4bit

    p = parse_params("check-4bit", ctx.claim.params)
    assert isinstance(p, Check4bitParams)
    client = WorkerClient(ctx, version_result)
    adapter = client.resolve(p.ref)
    scratch = ctx.scratch()
    folder, base = local_base(ctx, client, p.base, scratch / "base")
    _, adapter_dir = pull(client, adapter.ref, scratch / "adapter")
    report = check_4bit(
        folder,
        adapter_dir,
        probe=p.probe,
        probe_length=p.probe_length,
        seed=p.seed,
        device=ctx.torch_device(),
        progress=lambda fraction, stage: ctx.report(0.1 + 0.85 * fraction, stage),
    )
    report["adapter"] = {"ref": adapter.ref, "digest": adapter.digest}
    report["base"] = {"id": base.id, "fingerprint": base.fingerprint, "names": [n.name for n in base.names]}
    result = {"kind": "check-4bit", "ref": adapter.ref, "verdict": report["verdict"], "report": report}
    with unit_of_work(ctx.reg.sessions) as session:  # the record and the job's success: one commit
        version = resolve_row(session, parse_ref(adapter.ref))
        record_check(session, version.id, base.id, report, ctx.claim.job_id)
        ctx.publisher(lambda _: result)(session, None)
    return result
